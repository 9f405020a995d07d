// render: renders the dsv3 Helm chart without the helm binary and checks the result.
//
//	render -chart deploy/helm/dsv3 [-f values.yaml]... [--set a.b=v]... [-release NAME]
//	       [-namespace NS] [-o FILE] [-strict] [-cluster-schema FILE] [-cluster FILE]...
//	       [-expect-fail TEXT]
//
// It reproduces the parts of Helm 3's engine the chart uses: Chart.yaml, values.yaml
// coalesced with -f files and --set (Helm's typing: numbers from files are float64, --set
// integers int64, `null` deletes a key), values.schema.json validation (xeipuuv/gojsonschema,
// the library Helm 3 used until 3.18), the built-in objects (.Values .Release .Chart
// .Capabilities .Files .Template), sprig's TxtFuncMap without env/expandenv, and Helm's
// toYaml fromYaml fromYamlArray toJson fromJson fromJsonArray include tpl required lookup.
// Templates are rendered as Helm does (partials "_*" define only; NOTES.txt skipped;
// "<no value>" removed unless -strict, which sets missingkey=error like `helm lint --strict`)
// and split into documents with Helm's own separator expression.
//
// Then it checks the manifests (see checkAll): every document is strict YAML with
// apiVersion, kind and metadata.name; names and labels fit Kubernetes' limits; workload
// selectors select their own pod template and no other workload's; Services, Ingresses,
// PodDisruptionBudgets and ServiceMonitors select something and name existing ports; probe
// ports exist; volumes, mounts, Secrets, security settings; nvidia.com/gpu exactly where
// values ask for GPUs; the expert slices, computed by running each expert pod's start-up
// command for every ordinal, cover the routed experts exactly once per replica set; the
// gateway and attention workers list exactly the pods that exist; every pod restarts
// (restartPolicy Always), has a preStop delay and terminationGracePeriodSeconds =
// cluster.drainSeconds + 5, and every binary gets the cluster description's
// --drain-seconds (attention workers also --expert-failover-ms, --expert-grace-ms).
// Exit status 1 on any failure, each one printed on its own line.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

// ---- command line ---------------------------------------------------------------------

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	chartDir      string
	valueFiles    multiFlag
	sets          multiFlag
	release       string
	namespace     string
	out           string
	strict        bool
	clusterSchema string
	clusters      multiFlag
	expectFail    string
	kubeVersion   string
	quiet         bool
}

func main() {
	var o options
	flag.StringVar(&o.chartDir, "chart", "", "chart directory (required)")
	flag.Var(&o.valueFiles, "f", "values file merged over values.yaml (repeatable, in order)")
	flag.Var(&o.sets, "set", "a.b.c=value override like helm --set (repeatable)")
	flag.StringVar(&o.release, "release", "dsv3", "release name")
	flag.StringVar(&o.namespace, "namespace", "default", "release namespace")
	flag.StringVar(&o.out, "o", "", "write the rendered manifests here")
	flag.BoolVar(&o.strict, "strict", false, "missingkey=error, like helm lint --strict")
	flag.StringVar(&o.clusterSchema, "cluster-schema", "", "check that values.schema.json's properties.cluster equals this schema")
	flag.Var(&o.clusters, "cluster", "a cluster description (JSON) to validate against -cluster-schema (repeatable)")
	flag.StringVar(&o.expectFail, "expect-fail", "", "succeed only if rendering or checking fails with a message containing this text")
	flag.StringVar(&o.kubeVersion, "kube-version", "v1.29.0", ".Capabilities.KubeVersion")
	flag.BoolVar(&o.quiet, "q", false, "print only failures")
	flag.Parse()
	if o.chartDir == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: render -chart DIR [-f FILE]... [--set k=v]... [-o FILE] [-strict] [-cluster-schema FILE] [-cluster FILE]... [-expect-fail TEXT]")
		os.Exit(2)
	}
	label := describeRun(o)
	problems, summary := run(o)
	if o.expectFail != "" {
		for _, p := range problems {
			if strings.Contains(p, o.expectFail) {
				if !o.quiet {
					fmt.Printf("ok   %s: failed as expected (...%s)\n", label, tail(firstLine(p), 160))
				}
				return
			}
		}
		fmt.Printf("FAIL %s: expected a failure containing %q\n", label, o.expectFail)
		for _, p := range problems {
			fmt.Printf("     got: %s\n", p)
		}
		os.Exit(1)
	}
	if len(problems) > 0 {
		fmt.Printf("FAIL %s: %d problem(s)\n", label, len(problems))
		for _, p := range problems {
			fmt.Printf("  - %s\n", p)
		}
		os.Exit(1)
	}
	if !o.quiet {
		fmt.Printf("ok   %s: %s\n", label, summary)
	}
}

func describeRun(o options) string {
	parts := []string{filepath.Base(o.chartDir)}
	if o.release != "dsv3" {
		parts = append(parts, "-release "+o.release)
	}
	for _, f := range o.valueFiles {
		parts = append(parts, "-f "+filepath.Base(f))
	}
	for _, s := range o.sets {
		parts = append(parts, "--set "+s)
	}
	return strings.Join(parts, " ")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// run renders and checks; it returns the problems found and a one-line summary.
func run(o options) ([]string, string) {
	var problems []string
	add := func(format string, a ...interface{}) { problems = append(problems, fmt.Sprintf(format, a...)) }

	ch, err := loadChart(o.chartDir)
	if err != nil {
		return []string{err.Error()}, ""
	}
	if ch.Metadata.KubeVersion != "" {
		c, err := semver.NewConstraint(ch.Metadata.KubeVersion)
		if err != nil {
			add("Chart.yaml kubeVersion %q: %v", ch.Metadata.KubeVersion, err)
		} else if v, err := semver.NewVersion(o.kubeVersion); err != nil || !c.Check(v) {
			add("chart requires kubeVersion %s, rendering for %s", ch.Metadata.KubeVersion, o.kubeVersion)
		}
	}

	// Values: -f files merged in order, then --set, then coalesced over values.yaml.
	user := map[string]interface{}{}
	for _, f := range o.valueFiles {
		v, err := readValuesFile(f)
		if err != nil {
			return append(problems, err.Error()), ""
		}
		user = mergeMaps(user, v)
	}
	for _, s := range o.sets {
		if err := parseSet(s, user); err != nil {
			return append(problems, fmt.Sprintf("--set %s: %v", s, err)), ""
		}
	}
	values := coalesce(user, deepCopyMap(ch.Values))

	// values.schema.json, as helm install/template/lint do before rendering.
	if ch.Schema != nil {
		if errs := validateSchema(ch.Schema, values); len(errs) > 0 {
			for _, e := range errs {
				add("values don't meet values.schema.json: %s", e)
			}
			return problems, ""
		}
	}
	if o.clusterSchema != "" {
		problems = append(problems, checkClusterSchema(ch, o.clusterSchema, o.clusters)...)
	}

	rendered, err := renderChart(ch, values, o)
	if err != nil {
		return append(problems, err.Error()), ""
	}
	var all strings.Builder
	var objs []*object
	for _, r := range rendered {
		if o.strict && strings.Contains(r.text, "<no value>") {
			add("%s: output contains <no value>", r.name)
		}
		for i, doc := range splitManifests(r.text) {
			fmt.Fprintf(&all, "---\n# Source: %s\n%s\n", r.name, doc)
			obj, err := parseObject(r.name, i, doc)
			if err != nil {
				add("%v", err)
				continue
			}
			objs = append(objs, obj)
		}
	}
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(all.String()), 0o644); err != nil {
			add("writing %s: %v", o.out, err)
		}
	}
	c := &checker{values: values, objs: objs, release: o.release, namespace: o.namespace, chartDir: o.chartDir, files: ch.Files}
	c.checkAll()
	problems = append(problems, c.problems...)
	kinds := map[string]int{}
	for _, ob := range objs {
		kinds[ob.kind]++
	}
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(ks)
	return problems, fmt.Sprintf("%d objects (%s); %s", len(objs), strings.Join(ks, ", "), strings.Join(c.notes, "; "))
}

// ---- chart loading --------------------------------------------------------------------

// Metadata mirrors the fields of Helm's chart.Metadata that templates read (.Chart.Name...).
type Metadata struct {
	APIVersion  string   `json:"apiVersion"`
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion"`
	Description string   `json:"description"`
	Type        string   `json:"type"`
	KubeVersion string   `json:"kubeVersion"`
	Keywords    []string `json:"keywords"`
	Home        string   `json:"home"`
	Sources     []string `json:"sources"`
	Icon        string   `json:"icon"`
	Deprecated  bool     `json:"deprecated"`
}

type chartFile struct {
	name string // relative to the chart directory, slash-separated
	data []byte
}

type chart struct {
	Metadata  Metadata
	Values    map[string]interface{}
	Schema    []byte
	Templates []chartFile
	Files     Files
}

func loadChart(dir string) (*chart, error) {
	ch := &chart{Files: Files{}}
	raw, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, fmt.Errorf("chart: %v", err)
	}
	if err := yaml.UnmarshalStrict(raw, &ch.Metadata); err != nil {
		return nil, fmt.Errorf("Chart.yaml: %v", err)
	}
	if ch.Metadata.APIVersion != "v2" || ch.Metadata.Name == "" || ch.Metadata.Version == "" {
		return nil, fmt.Errorf("Chart.yaml: apiVersion v2, name and version are required")
	}
	if _, err := semver.NewVersion(ch.Metadata.Version); err != nil {
		return nil, fmt.Errorf("Chart.yaml: version %q is not SemVer 2: %v", ch.Metadata.Version, err)
	}
	if ch.Values, err = readValuesFile(filepath.Join(dir, "values.yaml")); err != nil {
		return nil, err
	}
	if s, err := os.ReadFile(filepath.Join(dir, "values.schema.json")); err == nil {
		ch.Schema = s
	}
	ignore := readHelmignore(filepath.Join(dir, ".helmignore"))
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if ignored(ignore, rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(rel, "templates/"):
			ch.Templates = append(ch.Templates, chartFile{rel, data})
		case rel == "Chart.yaml" || rel == "values.yaml" || rel == "values.schema.json" || rel == "Chart.lock" || strings.HasPrefix(rel, "charts/"):
		default:
			ch.Files[rel] = data
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("chart: %v", err)
	}
	sort.Slice(ch.Templates, func(i, j int) bool { return ch.Templates[i].name < ch.Templates[j].name })
	return ch, nil
}

// readHelmignore: the minimal subset (file globs, "dir/" entries, comments).
func readHelmignore(p string) []string {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func ignored(patterns []string, rel string, isDir bool) bool {
	base := path.Base(rel)
	for _, p := range patterns {
		if strings.HasSuffix(p, "/") {
			if isDir && (base == strings.TrimSuffix(p, "/") || rel == strings.TrimSuffix(p, "/")) {
				return true
			}
			continue
		}
		if ok, _ := path.Match(p, base); ok {
			return true
		}
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
	}
	return false
}

// readValuesFile parses like Helm's chartutil.ReadValues (sigs.k8s.io/yaml: numbers become float64).
func readValuesFile(p string) (map[string]interface{}, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("values: %v", err)
	}
	var v map[string]interface{}
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	if v == nil {
		v = map[string]interface{}{}
	}
	return v, nil
}

// ---- values: merging, --set, coalescing -----------------------------------------------

// mergeMaps is Helm's merge of -f files: b over a, maps merged recursively.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if vm, ok := v.(map[string]interface{}); ok {
			if om, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(om, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce puts the user's values over the chart defaults; a user null deletes the key.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	for k, dv := range defaults {
		uv, present := user[k]
		if !present {
			user[k] = dv
			continue
		}
		if uv == nil {
			delete(user, k)
			continue
		}
		um, uok := uv.(map[string]interface{})
		dm, dok := dv.(map[string]interface{})
		if uok && dok {
			user[k] = coalesce(um, dm)
		}
	}
	for k, v := range user {
		if v == nil {
			delete(user, k)
		}
	}
	return user
}

func deepCopyMap(m map[string]interface{}) map[string]interface{} {
	var out map[string]interface{}
	b, _ := json.Marshal(m)
	_ = json.Unmarshal(b, &out)
	return out
}

// parseSet handles Helm's --set subset: a.b.c=v pairs separated by commas, "\." for a dot
// inside a key, {x,y} lists; values typed as strvals does (int64, bool, null, string).
func parseSet(s string, into map[string]interface{}) error {
	for _, pair := range splitTopLevel(s, ',') {
		eq := strings.IndexByte(pair, '=')
		if eq <= 0 {
			return fmt.Errorf("expected key=value")
		}
		keys := splitKey(pair[:eq])
		raw := pair[eq+1:]
		var val interface{}
		if strings.HasPrefix(raw, "{") && strings.HasSuffix(raw, "}") {
			var list []interface{}
			if inner := raw[1 : len(raw)-1]; inner != "" {
				for _, item := range strings.Split(inner, ",") {
					list = append(list, typedVal(item))
				}
			}
			val = list
		} else {
			val = typedVal(raw)
		}
		m := into
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = val
	}
	return nil
}

func splitTopLevel(s string, sep byte) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			depth++
		case '}':
			depth--
		case sep:
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func splitKey(k string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] == '\\' && i+1 < len(k) {
			i++
			cur.WriteByte(k[i])
			continue
		}
		if k[i] == '.' {
			out = append(out, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(k[i])
	}
	return append(out, cur.String())
}

func typedVal(v string) interface{} {
	switch strings.ToLower(v) {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if v == "0" {
		return int64(0)
	}
	if len(v) > 0 && v[0] != '0' {
		if iv, err := strconv.ParseInt(v, 10, 64); err == nil {
			return iv
		}
	}
	return v
}

// ---- schema ---------------------------------------------------------------------------

func validateSchema(schema []byte, values interface{}) []string {
	s, err := gojsonschema.NewSchema(gojsonschema.NewBytesLoader(schema))
	if err != nil {
		return []string{fmt.Sprintf("schema does not load: %v", err)}
	}
	res, err := s.Validate(gojsonschema.NewGoLoader(values))
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range res.Errors() {
		out = append(out, e.String())
	}
	sort.Strings(out)
	return out
}

// checkClusterSchema: values.schema.json's properties.cluster must equal the cluster schema
// file (less its root "$schema"), and each cluster description must validate against it.
func checkClusterSchema(ch *chart, schemaFile string, clusters []string) []string {
	var problems []string
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		return []string{err.Error()}
	}
	var file map[string]interface{}
	if err := json.Unmarshal(raw, &file); err != nil {
		return []string{fmt.Sprintf("%s: %v", schemaFile, err)}
	}
	delete(file, "$schema")
	var vs map[string]interface{}
	if err := json.Unmarshal(ch.Schema, &vs); err != nil {
		return []string{fmt.Sprintf("values.schema.json: %v", err)}
	}
	embedded := dig(vs, "properties", "cluster")
	if embedded == nil {
		problems = append(problems, "values.schema.json has no properties.cluster")
	} else if d := firstDiff("cluster", embedded, file); d != "" {
		problems = append(problems, fmt.Sprintf("values.schema.json properties.cluster differs from %s at %s (copy the file's content, without $schema)", schemaFile, d))
	}
	// The three attention pool schemas are written out in full; keep them the same.
	att := dig(file, "properties", "attention", "properties")
	for _, role := range []string{"decode", "both"} {
		a, _ := dig(att, "prefill", "properties").(map[string]interface{})
		b, _ := dig(att, role, "properties").(map[string]interface{})
		if d := firstDiff(role, a, b); d != "" {
			problems = append(problems, fmt.Sprintf("%s: attention.%s.properties differ from attention.prefill.properties at %s", schemaFile, role, d))
		}
	}
	for _, c := range clusters {
		data, err := os.ReadFile(c)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		var v interface{}
		if err := json.Unmarshal(data, &v); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c, err))
			continue
		}
		for _, e := range validateSchema(raw, v) {
			problems = append(problems, fmt.Sprintf("%s does not meet %s: %s", c, schemaFile, e))
		}
		e := asInt(dig(v, "experts", "numExperts"))
		w := asInt(dig(v, "experts", "workers"))
		if w > e {
			problems = append(problems, fmt.Sprintf("%s: experts.workers %d > numExperts %d", c, w, e))
		}
	}
	return problems
}

func firstDiff(p string, a, b interface{}) string {
	am, aok := a.(map[string]interface{})
	bm, bok := b.(map[string]interface{})
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		var ks []string
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			if d := firstDiff(p+"."+k, am[k], bm[k]); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Sprintf("%s (%v vs %v)", p, short(a), short(b))
	}
	return ""
}

func short(v interface{}) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}

// ---- the template engine --------------------------------------------------------------

type Release struct {
	Name      string
	Namespace string
	Service   string
	Revision  int
	IsInstall bool
	IsUpgrade bool
}

type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k KubeVersion) String() string { return k.Version }

type VersionSet []string

func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
}

// Files is .Files: the chart's non-template files.
type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) Lines(name string) []string {
	s := strings.TrimSuffix(string(f[name]), "\n")
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for k, v := range f {
		if ok, _ := path.Match(pattern, k); ok {
			out[k] = v
		}
	}
	return out
}
func (f Files) AsConfig() string {
	m := map[string]string{}
	for k, v := range f {
		m[path.Base(k)] = string(v)
	}
	b, _ := yaml.Marshal(m)
	return strings.TrimSuffix(string(b), "\n")
}
func (f Files) AsSecrets() string {
	m := map[string]string{}
	for k, v := range f {
		m[path.Base(k)] = base64.StdEncoding.EncodeToString(v)
	}
	b, _ := yaml.Marshal(m)
	return strings.TrimSuffix(string(b), "\n")
}

type renderedFile struct {
	name string
	text string
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	a := []interface{}{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func renderChart(ch *chart, values map[string]interface{}, o options) ([]renderedFile, error) {
	kv := strings.TrimPrefix(o.kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	caps := Capabilities{
		KubeVersion: KubeVersion{Version: o.kubeVersion, Major: parts[0], Minor: parts[1], GitVersion: o.kubeVersion},
		APIVersions: VersionSet{"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1", "autoscaling/v2", "rbac.authorization.k8s.io/v1"},
	}
	release := Release{Name: o.release, Namespace: o.namespace, Service: "Helm", Revision: 1, IsInstall: true}
	top := func(tname string) map[string]interface{} {
		return map[string]interface{}{
			"Values":       values,
			"Release":      release,
			"Chart":        ch.Metadata,
			"Capabilities": caps,
			"Files":        ch.Files,
			"Template":     map[string]interface{}{"Name": tname, "BasePath": ch.Metadata.Name + "/templates"},
		}
	}

	t := template.New("gotpl")
	if o.strict {
		t.Option("missingkey=error")
	} else {
		t.Option("missingkey=zero")
	}
	funcs := template.FuncMap(sprig.TxtFuncMap())
	delete(funcs, "env")
	delete(funcs, "expandenv")
	included := map[string]int{}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["fromYamlArray"] = fromYAMLArray
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["fromJsonArray"] = fromJSONArray
	funcs["toToml"] = func(interface{}) (string, error) { return "", errors.New("toToml is not implemented by this renderer") }
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if included[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		included[name]++
		defer func() { included[name]-- }()
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		if _, err := c.New("tpl").Parse(text); err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf strings.Builder
		if err := c.ExecuteTemplate(&buf, "tpl", data); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	funcs["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	t.Funcs(funcs)

	prefix := ch.Metadata.Name + "/"
	for _, f := range ch.Templates {
		if _, err := t.New(prefix + f.name).Parse(string(f.data)); err != nil {
			return nil, fmt.Errorf("parse error: %v", err)
		}
	}
	var out []renderedFile
	for _, f := range ch.Templates {
		base := path.Base(f.name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		name := prefix + f.name
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, name, top(name)); err != nil {
			return nil, fmt.Errorf("render error: %v", err)
		}
		text := buf.String()
		if !o.strict {
			text = strings.ReplaceAll(text, "<no value>", "")
		}
		out = append(out, renderedFile{name, text})
	}
	// NOTES.txt renders too (helm install prints it): a failure there is a failure.
	for _, f := range ch.Templates {
		if path.Base(f.name) == "NOTES.txt" {
			var buf strings.Builder
			if err := t.ExecuteTemplate(&buf, prefix+f.name, top(prefix+f.name)); err != nil {
				return nil, fmt.Errorf("NOTES.txt: %v", err)
			}
		}
	}
	return out, nil
}

// splitManifests is Helm's releaseutil.SplitManifests.
var sepRE = regexp.MustCompile("(?:^|\\s*\n)---\\s*")

func splitManifests(big string) []string {
	var out []string
	for _, d := range sepRE.Split(strings.TrimSpace(big), -1) {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// ---- rendered objects -----------------------------------------------------------------

type object struct {
	source    string
	kind      string
	name      string
	namespace string
	doc       map[string]interface{}
}

func (o *object) String() string { return o.kind + "/" + o.name }

func parseObject(source string, i int, doc string) (*object, error) {
	var m map[string]interface{}
	if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
		return nil, fmt.Errorf("%s document %d: not valid YAML: %v\n%s", source, i, err, numbered(doc))
	}
	if m == nil {
		// Only comments: Helm skips these too.
		return nil, fmt.Errorf("%s document %d: empty object", source, i)
	}
	o := &object{source: source, doc: m}
	if api, _ := m["apiVersion"].(string); api == "" {
		return nil, fmt.Errorf("%s document %d: no apiVersion", source, i)
	}
	o.kind, _ = m["kind"].(string)
	o.name, _ = dig(m, "metadata", "name").(string)
	o.namespace, _ = dig(m, "metadata", "namespace").(string)
	if o.kind == "" || o.name == "" {
		return nil, fmt.Errorf("%s document %d: kind and metadata.name are required", source, i)
	}
	return o, nil
}

func numbered(doc string) string {
	var b strings.Builder
	for i, l := range strings.Split(doc, "\n") {
		fmt.Fprintf(&b, "    %3d  %s\n", i+1, l)
	}
	return b.String()
}

// ---- small accessors ------------------------------------------------------------------

func dig(v interface{}, keys ...string) interface{} {
	for _, k := range keys {
		m, ok := v.(map[string]interface{})
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asMap(v interface{}) map[string]interface{} {
	m, _ := v.(map[string]interface{})
	return m
}

func asSlice(v interface{}) []interface{} {
	s, _ := v.([]interface{})
	return s
}

func asString(v interface{}) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// asInt reads JSON/YAML numbers (float64), int64 from --set, and numeric strings; -1 otherwise.
func asInt(v interface{}) int64 {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
	case int64:
		return x
	case int:
		return int64(x)
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return n
		}
	}
	return -1
}

func stringMap(v interface{}) map[string]string {
	out := map[string]string{}
	for k, x := range asMap(v) {
		out[k] = asString(x)
	}
	return out
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ---- checks ---------------------------------------------------------------------------

type checker struct {
	values    map[string]interface{}
	objs      []*object
	release   string
	namespace string
	chartDir  string
	files     Files
	problems  []string
	notes     []string
	pods      []expertPod // expertPods' result, computed once
	podsDone  bool
	podsOK    bool
}

func (c *checker) fail(o *object, format string, a ...interface{}) {
	prefix := ""
	if o != nil {
		prefix = fmt.Sprintf("%s (%s): ", o, o.source)
	}
	c.problems = append(c.problems, prefix+fmt.Sprintf(format, a...))
}

func (c *checker) byKind(kind string) []*object {
	var out []*object
	for _, o := range c.objs {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (c *checker) workloads() []*object {
	var out []*object
	for _, o := range c.objs {
		if o.kind == "Deployment" || o.kind == "StatefulSet" {
			out = append(out, o)
		}
	}
	return out
}

func podLabels(w *object) map[string]string {
	return stringMap(dig(w.doc, "spec", "template", "metadata", "labels"))
}

func podSpec(w *object) map[string]interface{} { return asMap(dig(w.doc, "spec", "template", "spec")) }

func containers(w *object) []map[string]interface{} {
	var out []map[string]interface{}
	for _, key := range []string{"initContainers", "containers"} {
		for _, c := range asSlice(podSpec(w)[key]) {
			out = append(out, asMap(c))
		}
	}
	return out
}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1035Label     = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelValueRE     = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	labelNameRE      = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	envNameRE        = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	floatishRE       = regexp.MustCompile(`^[-+]?[0-9]*\.?[0-9]+[eE][-+]?[0-9]+$`)
)

func (c *checker) checkAll() {
	c.checkNames()
	c.checkWorkloads()
	c.checkServices()
	c.checkIngresses()
	c.checkPDBs()
	c.checkServiceMonitors()
	c.checkDashboard()
	c.checkGPUs()
	c.checkExpertSlices()
	c.checkWorkerLists()
	c.checkWorkerFlags()
	c.checkSelfHealing()
}

func (c *checker) checkNames() {
	seen := map[string]*object{}
	for _, o := range c.objs {
		key := o.kind + "/" + o.namespace + "/" + o.name
		if prev, ok := seen[key]; ok {
			c.fail(o, "duplicate object (also in %s)", prev.source)
		}
		seen[key] = o
		if len(o.name) > 253 || !dns1123Subdomain.MatchString(o.name) {
			c.fail(o, "metadata.name %q is not a DNS-1123 subdomain", o.name)
		}
		switch o.kind {
		case "Service":
			if len(o.name) > 63 || !dns1035Label.MatchString(o.name) {
				c.fail(o, "Service name %q is not a DNS-1035 label (<= 63)", o.name)
			}
		case "StatefulSet":
			if len(o.name) > 52 {
				c.fail(o, "StatefulSet name %q is longer than 52 (its controller-revision-hash label would exceed 63)", o.name)
			}
			if n := asInt(dig(o.doc, "spec", "replicas")); n > 0 {
				if host := fmt.Sprintf("%s-%d", o.name, n-1); len(host) > 63 || !dns1123Label.MatchString(host) {
					c.fail(o, "pod hostname %q is not a DNS label (<= 63)", host)
				}
			}
		case "Deployment":
			if len(o.name) > 63 || !dns1123Label.MatchString(o.name) {
				c.fail(o, "Deployment name %q is not a DNS label", o.name)
			}
		}
		c.checkLabels(o, "metadata.labels", asMap(dig(o.doc, "metadata", "labels")))
		if t := dig(o.doc, "spec", "template", "metadata", "labels"); t != nil {
			c.checkLabels(o, "spec.template.metadata.labels", asMap(t))
		}
	}
}

func (c *checker) checkLabels(o *object, where string, labels map[string]interface{}) {
	for k, v := range labels {
		s, ok := v.(string)
		if !ok {
			c.fail(o, "%s %s: value %v is not a string", where, k, v)
			continue
		}
		if !labelNameRE.MatchString(k) || len(k) > 317 {
			c.fail(o, "%s: bad label key %q", where, k)
		}
		if len(s) > 63 || !labelValueRE.MatchString(s) {
			c.fail(o, "%s %s: bad label value %q", where, k, s)
		}
	}
}

func (c *checker) checkWorkloads() {
	ws := c.workloads()
	services := map[string]*object{}
	for _, s := range c.byKind("Service") {
		services[s.name] = s
	}
	secrets := map[string]bool{}
	for _, s := range c.byKind("Secret") {
		secrets[s.name] = true
	}
	if name := asString(dig(c.values, "cluster", "gateway", "apiKeysSecret")); name != "" {
		secrets[name] = true // an existing Secret named by values
	}
	for _, w := range ws {
		sel := stringMap(dig(w.doc, "spec", "selector", "matchLabels"))
		labels := podLabels(w)
		if len(sel) == 0 {
			c.fail(w, "spec.selector.matchLabels is empty")
		} else if !subset(sel, labels) {
			c.fail(w, "spec.selector.matchLabels %v is not a subset of the pod template labels %v", sel, labels)
		}
		for _, other := range ws {
			if other != w && len(sel) > 0 && subset(sel, podLabels(other)) {
				c.fail(w, "selector %v also selects the pods of %s", sel, other)
			}
		}
		if w.kind == "StatefulSet" {
			svcName := asString(dig(w.doc, "spec", "serviceName"))
			svc := services[svcName]
			switch {
			case svc == nil:
				c.fail(w, "spec.serviceName %q is not a rendered Service", svcName)
			case asString(dig(svc.doc, "spec", "clusterIP")) != "None":
				c.fail(w, "spec.serviceName %q is not headless (clusterIP: None)", svcName)
			case !subset(stringMap(dig(svc.doc, "spec", "selector")), labels):
				c.fail(w, "its governing Service %s does not select its pods", svcName)
			}
		}
		c.checkPodSpec(w, secrets)
	}
}

func (c *checker) checkPodSpec(w *object, secrets map[string]bool) {
	spec := podSpec(w)
	psc := asMap(spec["securityContext"])
	volumes := map[string]map[string]interface{}{}
	for _, v := range asSlice(spec["volumes"]) {
		vm := asMap(v)
		n := asString(vm["name"])
		if _, dup := volumes[n]; dup {
			c.fail(w, "volume %q defined twice", n)
		}
		volumes[n] = vm
		if pvc := asMap(vm["persistentVolumeClaim"]); pvc != nil {
			if asString(pvc["claimName"]) == "" {
				c.fail(w, "volume %q: persistentVolumeClaim without claimName", n)
			}
			if pvc["readOnly"] != true {
				c.fail(w, "volume %q: the model PVC must be readOnly", n)
			}
		}
		if s := asMap(vm["secret"]); s != nil && !secrets[asString(s["secretName"])] {
			c.fail(w, "volume %q: Secret %q is neither rendered nor named in values", n, asString(s["secretName"]))
		}
	}
	if len(containers(w)) == 0 {
		c.fail(w, "no containers")
	}
	for _, ct := range containers(w) {
		cname := asString(ct["name"])
		where := "container " + cname
		if asString(ct["image"]) == "" || strings.HasSuffix(asString(ct["image"]), ":") {
			c.fail(w, "%s: no image tag", where)
		}
		// ports
		byName := map[string]int64{}
		numbers := map[int64]bool{}
		for _, p := range asSlice(ct["ports"]) {
			pm := asMap(p)
			n := asInt(pm["containerPort"])
			if n < 1 || n > 65535 {
				c.fail(w, "%s: containerPort %v", where, pm["containerPort"])
			}
			if numbers[n] {
				c.fail(w, "%s: containerPort %d twice", where, n)
			}
			numbers[n] = true
			if pn := asString(pm["name"]); pn != "" {
				if len(pn) > 15 || !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).MatchString(pn) {
					c.fail(w, "%s: port name %q is not an IANA service name (<= 15)", where, pn)
				}
				if _, dup := byName[pn]; dup {
					c.fail(w, "%s: port name %q twice", where, pn)
				}
				byName[pn] = n
			}
		}
		// probes
		for _, kind := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
			p := asMap(ct[kind])
			if p == nil {
				c.fail(w, "%s: no %s", where, kind)
				continue
			}
			handlers := 0
			for _, h := range []string{"httpGet", "tcpSocket"} {
				if hm := asMap(p[h]); hm != nil {
					handlers++
					if !portExists(hm["port"], byName, numbers) {
						c.fail(w, "%s: %s.%s.port %v is not a container port", where, kind, h, hm["port"])
					}
				}
			}
			if g := asMap(p["grpc"]); g != nil {
				handlers++
				n, isNum := g["port"].(float64)
				if !isNum || !numbers[int64(n)] {
					c.fail(w, "%s: %s.grpc.port %v must be the number of a container port (gRPC probes take no names)", where, kind, g["port"])
				}
			}
			if p["exec"] != nil {
				handlers++
			}
			if handlers != 1 {
				c.fail(w, "%s: %s needs exactly one handler", where, kind)
			}
		}
		// environment
		env := map[string]bool{}
		for _, e := range asSlice(ct["env"]) {
			n := asString(asMap(e)["name"])
			if !envNameRE.MatchString(n) {
				c.fail(w, "%s: bad env name %q", where, n)
			}
			if env[n] {
				c.fail(w, "%s: env %s set twice", where, n)
			}
			env[n] = true
			if v, ok := asMap(e)["value"]; ok {
				if _, isStr := v.(string); !isStr {
					c.fail(w, "%s: env %s value %v is not a string", where, n, v)
				}
			}
		}
		for _, key := range []string{"command", "args"} {
			for _, a := range asSlice(ct[key]) {
				s, ok := a.(string)
				if !ok {
					c.fail(w, "%s: %s item %v is not a string", where, key, a)
					continue
				}
				if floatishRE.MatchString(s) {
					c.fail(w, "%s: %s item %q is a number in exponent form (format integers with int/int64)", where, key, s)
				}
				for _, ref := range varRefs(s) {
					if !env[ref] {
						c.fail(w, "%s: %s refers to $(%s), which is not in env (Kubernetes would pass it literally)", where, key, ref)
					}
				}
			}
		}
		// mounts
		mounts := map[string]map[string]interface{}{}
		for _, m := range asSlice(ct["volumeMounts"]) {
			mm := asMap(m)
			n := asString(mm["name"])
			if volumes[n] == nil {
				c.fail(w, "%s: volumeMount %q has no volume", where, n)
			}
			mounts[asString(mm["mountPath"])] = mm
			if n == "model" && mm["readOnly"] != true {
				c.fail(w, "%s: the model volume must be mounted readOnly", where)
			}
		}
		if volumes["model"] != nil {
			mp := asString(dig(c.values, "modelVolume", "mountPath"))
			if mounts[mp] == nil || asString(mounts[mp]["name"]) != "model" {
				c.fail(w, "%s: the model volume is not mounted at %s", where, mp)
			}
		}
		// security
		sc := asMap(ct["securityContext"])
		if sc["runAsNonRoot"] != true && psc["runAsNonRoot"] != true {
			c.fail(w, "%s: runAsNonRoot is not set", where)
		}
		if sc["readOnlyRootFilesystem"] != true {
			c.fail(w, "%s: readOnlyRootFilesystem is not true", where)
		} else if mounts["/tmp"] == nil {
			c.fail(w, "%s: read-only root filesystem but no /tmp mount", where)
		}
		if sc["allowPrivilegeEscalation"] != false {
			c.fail(w, "%s: allowPrivilegeEscalation is not false", where)
		}
		dropsAll := false
		for _, d := range asSlice(dig(sc, "capabilities", "drop")) {
			if asString(d) == "ALL" {
				dropsAll = true
			}
		}
		if !dropsAll {
			c.fail(w, "%s: capabilities.drop does not contain ALL", where)
		}
		if asString(dig(sc, "seccompProfile", "type")) != "RuntimeDefault" && asString(dig(psc, "seccompProfile", "type")) != "RuntimeDefault" {
			c.fail(w, "%s: seccompProfile is not RuntimeDefault", where)
		}
		if sc["privileged"] == true {
			c.fail(w, "%s: privileged", where)
		}
	}
}

func portExists(p interface{}, byName map[string]int64, numbers map[int64]bool) bool {
	switch x := p.(type) {
	case string:
		if _, ok := byName[x]; ok {
			return true
		}
		n, err := strconv.ParseInt(x, 10, 64)
		return err == nil && numbers[n]
	case float64:
		return numbers[int64(x)]
	}
	return false
}

// varRefs lists the $(NAME) references Kubernetes would expand ($$ escapes a $).
func varRefs(s string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			continue
		}
		if s[i+1] == '$' {
			i++
			continue
		}
		if s[i+1] == '(' {
			if j := strings.IndexByte(s[i+2:], ')'); j >= 0 {
				name := s[i+2 : i+2+j]
				if envNameRE.MatchString(name) {
					out = append(out, name)
				}
			}
		}
	}
	return out
}

// expandK8s is Kubernetes' $(VAR) expansion of command, args and env values: defined
// variables are replaced, $$ becomes $, anything else stays as written.
func expandK8s(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			j := strings.IndexByte(s[i+2:], ')')
			if j < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+j]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + j
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func (c *checker) checkServices() {
	ws := c.workloads()
	for _, s := range c.byKind("Service") {
		sel := stringMap(dig(s.doc, "spec", "selector"))
		if len(sel) == 0 {
			c.fail(s, "no selector")
			continue
		}
		var matched []*object
		for _, w := range ws {
			if subset(sel, podLabels(w)) {
				matched = append(matched, w)
			}
		}
		if len(matched) == 0 {
			c.fail(s, "selector %v matches no workload's pod labels", sel)
			continue
		}
		ports := asSlice(dig(s.doc, "spec", "ports"))
		if len(ports) == 0 {
			c.fail(s, "no ports")
		}
		for _, p := range ports {
			pm := asMap(p)
			target := pm["targetPort"]
			if target == nil {
				target = pm["port"]
			}
			for _, w := range matched {
				found := false
				for _, ct := range containers(w) {
					byName, numbers := containerPorts(ct)
					if portExists(target, byName, numbers) {
						found = true
					}
				}
				if !found {
					c.fail(s, "port %v: targetPort %v is not a container port of %s", pm["name"], target, w)
				}
			}
		}
		if t := asString(dig(s.doc, "spec", "type")); t != "" && t != "ClusterIP" && t != "NodePort" && t != "LoadBalancer" {
			c.fail(s, "unexpected type %q", t)
		}
	}
}

func containerPorts(ct map[string]interface{}) (map[string]int64, map[int64]bool) {
	byName := map[string]int64{}
	numbers := map[int64]bool{}
	for _, p := range asSlice(ct["ports"]) {
		pm := asMap(p)
		n := asInt(pm["containerPort"])
		numbers[n] = true
		if name := asString(pm["name"]); name != "" {
			byName[name] = n
		}
	}
	return byName, numbers
}

func (c *checker) serviceByName(name string) *object {
	for _, s := range c.byKind("Service") {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (c *checker) checkIngresses() {
	for _, ing := range c.byKind("Ingress") {
		for _, r := range asSlice(dig(ing.doc, "spec", "rules")) {
			for _, p := range asSlice(dig(r, "http", "paths")) {
				svcName := asString(dig(p, "backend", "service", "name"))
				svc := c.serviceByName(svcName)
				if svc == nil {
					c.fail(ing, "backend Service %q is not rendered", svcName)
					continue
				}
				want := dig(p, "backend", "service", "port")
				ok := false
				for _, sp := range asSlice(dig(svc.doc, "spec", "ports")) {
					spm := asMap(sp)
					if (dig(want, "name") != nil && asString(spm["name"]) == asString(dig(want, "name"))) ||
						(dig(want, "number") != nil && asInt(spm["port"]) == asInt(dig(want, "number"))) {
						ok = true
					}
				}
				if !ok {
					c.fail(ing, "backend port %v is not a port of Service %s", want, svcName)
				}
			}
		}
	}
}

func (c *checker) checkPDBs() {
	for _, p := range c.byKind("PodDisruptionBudget") {
		sel := stringMap(dig(p.doc, "spec", "selector", "matchLabels"))
		n := 0
		for _, w := range c.workloads() {
			if len(sel) > 0 && subset(sel, podLabels(w)) {
				n++
			}
		}
		if n == 0 {
			c.fail(p, "selector %v matches no workload", sel)
		}
		if (dig(p.doc, "spec", "maxUnavailable") == nil) == (dig(p.doc, "spec", "minAvailable") == nil) {
			c.fail(p, "exactly one of maxUnavailable and minAvailable")
		}
	}
}

func (c *checker) checkServiceMonitors() {
	want := dig(c.values, "metrics", "serviceMonitor", "enabled") == true
	sms := c.byKind("ServiceMonitor")
	if want != (len(sms) > 0) {
		c.fail(nil, "metrics.serviceMonitor.enabled is %v but %d ServiceMonitor(s) rendered", want, len(sms))
	}
	for _, sm := range sms {
		if api := asString(sm.doc["apiVersion"]); api != "monitoring.coreos.com/v1" {
			c.fail(sm, "apiVersion %q", api)
		}
		sel := stringMap(dig(sm.doc, "spec", "selector", "matchLabels"))
		var matched []*object
		for _, s := range c.byKind("Service") {
			if len(sel) > 0 && subset(sel, stringMap(dig(s.doc, "metadata", "labels"))) {
				matched = append(matched, s)
			}
		}
		if len(matched) == 0 {
			c.fail(sm, "selector %v matches no Service", sel)
		}
		covered := map[string]bool{}
		for _, e := range asSlice(dig(sm.doc, "spec", "endpoints")) {
			port := asString(dig(e, "port"))
			n := 0
			for _, s := range matched {
				for _, sp := range asSlice(dig(s.doc, "spec", "ports")) {
					if asString(dig(sp, "name")) == port {
						n++
						covered[s.name] = true
					}
				}
			}
			if n == 0 {
				c.fail(sm, "endpoint port %q is not a port of any selected Service", port)
			}
		}
		for _, s := range matched {
			if !covered[s.name] {
				c.fail(sm, "selects Service %s but scrapes none of its ports", s.name)
			}
		}
		c.notes = append(c.notes, fmt.Sprintf("ServiceMonitor scrapes %d Services", len(matched)))
	}
}

func (c *checker) checkDashboard() {
	want := dig(c.values, "metrics", "grafanaDashboard", "enabled") == true
	found := 0
	for _, cm := range c.byKind("ConfigMap") {
		if asString(dig(cm.doc, "metadata", "labels", "grafana_dashboard")) != "1" {
			continue
		}
		found++
		for k, v := range asMap(dig(cm.doc, "data")) {
			var d map[string]interface{}
			if err := json.Unmarshal([]byte(asString(v)), &d); err != nil {
				c.fail(cm, "data %s is not JSON: %v", k, err)
				continue
			}
			if _, ok := d["panels"].([]interface{}); !ok {
				c.fail(cm, "data %s has no panels array", k)
			}
			var src interface{}
			if err := json.Unmarshal(c.files["dashboards/"+k], &src); err != nil {
				c.fail(cm, "chart file dashboards/%s: %v", k, err)
			} else if !reflect.DeepEqual(src, interface{}(d)) {
				c.fail(cm, "data %s differs from the chart's dashboards/%s", k, k)
			}
		}
	}
	if want && found == 0 {
		c.fail(nil, "metrics.grafanaDashboard.enabled but no ConfigMap labelled grafana_dashboard: \"1\"")
	}
	if !want && found > 0 {
		c.fail(nil, "metrics.grafanaDashboard.enabled is false but a dashboard ConfigMap rendered")
	}
}

// componentSection maps a workload to the values section that configures its pods.
func componentSection(w *object) string {
	l := podLabels(w)
	switch l["app.kubernetes.io/component"] {
	case "gateway":
		return "gateway"
	case "expert-worker":
		return "experts"
	case "attention-worker":
		return l["dsv3.io/role"]
	}
	return ""
}

func (c *checker) checkGPUs() {
	total := int64(0)
	for _, w := range c.workloads() {
		sec := componentSection(w)
		if sec == "" {
			c.fail(w, "unknown component labels %v", podLabels(w))
			continue
		}
		want := int64(0)
		if sec != "gateway" {
			want = asInt(dig(c.values, sec, "gpus"))
			if want < 0 {
				want = 0
			}
		}
		for _, ct := range containers(w) {
			for _, kind := range []string{"limits", "requests"} {
				v, has := asMap(dig(ct, "resources", kind))["nvidia.com/gpu"]
				switch {
				case want == 0 && has:
					c.fail(w, "container %s: resources.%s has nvidia.com/gpu but values %s.gpus is 0", asString(ct["name"]), kind, sec)
				case want > 0 && asInt(v) != want:
					c.fail(w, "container %s: resources.%s nvidia.com/gpu is %v, values %s.gpus is %d", asString(ct["name"]), kind, v, sec, want)
				}
			}
		}
		total += want * asInt(dig(w.doc, "spec", "replicas"))
	}
	// Only pod templates may ask for GPUs.
	for _, o := range c.objs {
		if o.kind != "Deployment" && o.kind != "StatefulSet" && strings.Contains(toJSON(o.doc), "nvidia.com/gpu") {
			c.fail(o, "mentions nvidia.com/gpu outside a workload")
		}
	}
	c.notes = append(c.notes, fmt.Sprintf("%d GPUs in total", total))
}

// expertPods runs each expert pod's start-up command (the chart's shell snippet) with a stub
// dsv3-expert-worker that prints its arguments, for every ordinal of every expert StatefulSet.
type expertPod struct {
	sts     *object
	ordinal int64
	host    string // stable DNS name:port
	args    []string
	first   int64
	last    int64
}

func (c *checker) expertStatefulSets() []*object {
	var out []*object
	for _, w := range c.byKind("StatefulSet") {
		if podLabels(w)["app.kubernetes.io/component"] == "expert-worker" {
			out = append(out, w)
		}
	}
	return out
}

func (c *checker) runPod(w *object, ordinal int64, stubDir string) ([]string, error) {
	ct := containers(w)[0]
	pod := fmt.Sprintf("%s-%d", w.name, ordinal)
	vars := map[string]string{}
	env := []string{"PATH=" + stubDir + ":/usr/bin:/bin", "HOSTNAME=" + pod}
	for _, e := range asSlice(ct["env"]) {
		em := asMap(e)
		n := asString(em["name"])
		var v string
		if val, ok := em["value"]; ok {
			v = expandK8s(asString(val), vars)
		} else if fp := asString(dig(em, "valueFrom", "fieldRef", "fieldPath")); fp != "" {
			switch fp {
			case "metadata.name":
				v = pod
			case "metadata.namespace":
				v = c.namespace
			default:
				v = "unknown-" + fp
			}
		}
		vars[n] = v
		env = append(env, n+"="+v)
	}
	var argv []string
	for _, key := range []string{"command", "args"} {
		for _, a := range asSlice(ct[key]) {
			argv = append(argv, expandK8s(asString(a), vars))
		}
	}
	if len(argv) == 0 {
		return nil, errors.New("no command")
	}
	if argv[0] != "/bin/sh" && argv[0] != "sh" {
		// Not a shell wrapper: the arguments are the binary's.
		return argv[1:], nil
	}
	cmd := exec.Command("/bin/sh", argv[1:]...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pod %s start-up command: %v: %s", pod, err, strings.TrimSpace(stderr.String()))
	}
	out := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(out) == 0 || out[0] != "STUB dsv3-expert-worker" {
		return nil, fmt.Errorf("pod %s start-up command did not exec dsv3-expert-worker (stdout %q)", pod, stdout.String())
	}
	return out[1:], nil
}

// flagValue returns the value after the last occurrence of name in args.
func flagValue(args []string, name string) (string, bool) {
	v, ok := "", false
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			v, ok = args[i+1], true
		}
	}
	return v, ok
}

func (c *checker) expertPods() ([]expertPod, bool) {
	if !c.podsDone {
		c.pods, c.podsOK = c.runExpertPods()
		c.podsDone = true
	}
	return c.pods, c.podsOK
}

func (c *checker) runExpertPods() ([]expertPod, bool) {
	stubDir, err := os.MkdirTemp("", "dsv3-render-stub-")
	if err != nil {
		c.fail(nil, "temp dir: %v", err)
		return nil, false
	}
	defer os.RemoveAll(stubDir)
	stub := "#!/bin/sh\necho STUB dsv3-expert-worker\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n"
	if err := os.WriteFile(filepath.Join(stubDir, "dsv3-expert-worker"), []byte(stub), 0o755); err != nil {
		c.fail(nil, "stub: %v", err)
		return nil, false
	}
	var pods []expertPod
	ok := true
	for _, w := range c.expertStatefulSets() {
		svc := asString(dig(w.doc, "spec", "serviceName"))
		byName, _ := containerPorts(containers(w)[0])
		for i := int64(0); i < asInt(dig(w.doc, "spec", "replicas")); i++ {
			args, err := c.runPod(w, i, stubDir)
			if err != nil {
				c.fail(w, "%v", err)
				ok = false
				continue
			}
			p := expertPod{sts: w, ordinal: i, args: args,
				host: fmt.Sprintf("%s-%d.%s.%s.svc.%s:%d", w.name, i, svc, c.namespace, asString(c.values["clusterDomain"]), byName["grpc"])}
			spec, has := flagValue(args, "--experts")
			if !has {
				c.fail(w, "pod %d: no --experts flag in %v", i, args)
				ok = false
				continue
			}
			if _, err := fmt.Sscanf(spec, "%d-%d", &p.first, &p.last); err != nil || p.first > p.last {
				c.fail(w, "pod %d: --experts %q is not A-B with A <= B", i, spec)
				ok = false
				continue
			}
			pods = append(pods, p)
		}
	}
	return pods, ok
}

func (c *checker) checkExpertSlices() {
	e := asInt(dig(c.values, "cluster", "experts", "numExperts"))
	wn := asInt(dig(c.values, "cluster", "experts", "workers"))
	r := asInt(dig(c.values, "cluster", "experts", "replicasPerSlice"))
	if r < 1 {
		r = 1
	}
	sets := c.expertStatefulSets()
	if int64(len(sets)) != r {
		c.fail(nil, "%d expert StatefulSets rendered, cluster.experts.replicasPerSlice is %d", len(sets), r)
	}
	for _, s := range sets {
		if n := asInt(dig(s.doc, "spec", "replicas")); n != wn {
			c.fail(s, "replicas %d, cluster.experts.workers is %d", n, wn)
		}
	}
	pods, ok := c.expertPods()
	if !ok {
		return
	}
	covered := map[*object][]int{}
	sizes := map[int64]bool{}
	for _, p := range pods {
		if covered[p.sts] == nil {
			covered[p.sts] = make([]int, e)
		}
		// The documented rule, computed independently.
		wantFirst, wantLast := p.ordinal*e/wn, (p.ordinal+1)*e/wn-1
		if p.first != wantFirst || p.last != wantLast {
			c.fail(p.sts, "pod %d hosts experts %d-%d; the rule floor(i*E/W)..floor((i+1)*E/W)-1 gives %d-%d", p.ordinal, p.first, p.last, wantFirst, wantLast)
		}
		if p.first < 0 || p.last >= e {
			c.fail(p.sts, "pod %d: experts %d-%d outside 0-%d", p.ordinal, p.first, p.last, e-1)
			continue
		}
		for x := p.first; x <= p.last; x++ {
			covered[p.sts][x]++
		}
		sizes[p.last-p.first+1] = true
		for _, f := range []string{"--model", "--listen", "--transport", "--threads", "--worker-id"} {
			if _, has := flagValue(p.args, f); !has {
				c.fail(p.sts, "pod %d: no %s flag", p.ordinal, f)
			}
		}
		if v, _ := flagValue(p.args, "--worker-id"); v != fmt.Sprintf("%s-%d", p.sts.name, p.ordinal) {
			c.fail(p.sts, "pod %d: --worker-id %q is not the pod name", p.ordinal, v)
		}
	}
	for s, cov := range covered {
		for x, n := range cov {
			if n != 1 {
				c.fail(s, "expert %d is hosted %d times in this replica set (want exactly once)", x, n)
			}
		}
	}
	var sz []string
	for k := range sizes {
		sz = append(sz, strconv.FormatInt(k, 10))
	}
	sort.Strings(sz)
	c.notes = append(c.notes, fmt.Sprintf("experts 0-%d covered once by each of %d replica set(s) of %d slices (slice sizes %s)", e-1, len(covered), wn, strings.Join(sz, "/")))
}

func (c *checker) containerArgs(w *object) []string {
	var out []string
	for _, a := range asSlice(containers(w)[0]["args"]) {
		out = append(out, asString(a))
	}
	return out
}

func sortedList(s string) []string {
	l := strings.Split(s, ",")
	sort.Strings(l)
	return l
}

// checkWorkerLists: the gateway lists exactly the attention pods, the attention workers
// exactly the expert pods, by their stable DNS names.
func (c *checker) checkWorkerLists() {
	pods, _ := c.expertPods()
	var experts []string
	for _, p := range pods {
		experts = append(experts, p.host)
	}
	sort.Strings(experts)
	pools := map[string][]string{}
	for _, w := range c.byKind("StatefulSet") {
		l := podLabels(w)
		if l["app.kubernetes.io/component"] != "attention-worker" {
			continue
		}
		args := c.containerArgs(w)
		if v, _ := flagValue(args, "--expert-workers"); !reflect.DeepEqual(sortedList(v), experts) {
			c.fail(w, "--expert-workers %q does not list exactly the expert pods %v", v, experts)
		}
		byName, _ := containerPorts(containers(w)[0])
		svc := asString(dig(w.doc, "spec", "serviceName"))
		for i := int64(0); i < asInt(dig(w.doc, "spec", "replicas")); i++ {
			pools[l["dsv3.io/role"]] = append(pools[l["dsv3.io/role"]],
				fmt.Sprintf("%s-%d.%s.%s.svc.%s:%d", w.name, i, svc, c.namespace, asString(c.values["clusterDomain"]), byName["grpc"]))
		}
	}
	colocated := asString(dig(c.values, "cluster", "attention", "mode")) == "colocated"
	wantRoles := []string{"prefill", "decode"}
	flags := map[string]string{"prefill": "--prefill-workers", "decode": "--decode-workers", "both": "--workers"}
	if colocated {
		wantRoles = []string{"both"}
	}
	for role := range pools {
		found := false
		for _, r := range wantRoles {
			found = found || r == role
		}
		if !found {
			c.fail(nil, "attention pool %q rendered in mode %s", role, dig(c.values, "cluster", "attention", "mode"))
		}
	}
	gws := 0
	for _, w := range c.byKind("Deployment") {
		if podLabels(w)["app.kubernetes.io/component"] != "gateway" {
			continue
		}
		gws++
		args := c.containerArgs(w)
		for _, role := range []string{"prefill", "decode", "both"} {
			v, has := flagValue(args, flags[role])
			want := pools[role]
			sort.Strings(want)
			if len(want) == 0 {
				if has {
					c.fail(w, "%s given but no %s pool is rendered", flags[role], role)
				}
				continue
			}
			if !reflect.DeepEqual(sortedList(v), want) {
				c.fail(w, "%s %q does not list exactly the %s pods %v", flags[role], v, role, want)
			}
		}
		if v, _ := flagValue(args, "--model-name"); v != asString(dig(c.values, "cluster", "model", "name")) {
			c.fail(w, "--model-name %q is not cluster.model.name", v)
		}
		if v, _ := flagValue(args, "--open-paths"); v != strings.Join(toStrings(dig(c.values, "cluster", "gateway", "openPaths")), ",") {
			c.fail(w, "--open-paths %q is not cluster.gateway.openPaths", v)
		}
	}
	if gws != 1 {
		c.fail(nil, "%d gateway Deployments rendered, want 1", gws)
	}
	for _, role := range wantRoles {
		if n := asInt(dig(c.values, "cluster", "attention", role, "replicas")); int64(len(pools[role])) != n {
			c.fail(nil, "attention pool %s has %d pods, cluster.attention.%s.replicas is %d", role, len(pools[role]), role, n)
		}
	}
}

func toStrings(v interface{}) []string {
	var out []string
	for _, x := range asSlice(v) {
		out = append(out, asString(x))
	}
	return out
}

// checkWorkerFlags: the integers the cluster description sets reach the binaries unchanged.
func (c *checker) checkWorkerFlags() {
	for _, w := range c.byKind("StatefulSet") {
		l := podLabels(w)
		if l["app.kubernetes.io/component"] != "attention-worker" {
			continue
		}
		role := l["dsv3.io/role"]
		args := c.containerArgs(w)
		if v, _ := flagValue(args, "--role"); v != role {
			c.fail(w, "--role %q, pod label dsv3.io/role %q", v, role)
		}
		pool := dig(c.values, "cluster", "attention", role)
		for f, key := range map[string]string{"--kv-cache-bytes": "kvCacheBytes", "--max-batch-tokens": "maxBatchTokens", "--max-running": "maxRunning", "--threads": "threads"} {
			want := asInt(dig(pool, key))
			if v, _ := flagValue(args, f); asInt(v) != want {
				c.fail(w, "%s %q, cluster.attention.%s.%s is %d", f, v, role, key, want)
			}
		}
		if v, _ := flagValue(args, "--expert-transport"); v != asString(dig(c.values, "cluster", "experts", "transport")) {
			c.fail(w, "--expert-transport %q is not cluster.experts.transport", v)
		}
		listen, _ := flagValue(args, "--listen")
		if !strings.HasSuffix(listen, fmt.Sprintf(":%d", asInt(dig(pool, "port")))) {
			c.fail(w, "--listen %q does not use cluster.attention.%s.port", listen, role)
		}
	}
}

// clusterInt reads an integer of the cluster description, or the schema's default when absent.
func (c *checker) clusterInt(def int64, keys ...string) int64 {
	v := dig(c.values, append([]string{"cluster"}, keys...)...)
	if v == nil {
		return def
	}
	return asInt(v)
}

// checkSelfHealing: what makes Kubernetes heal and stop the cluster the way dsv3-launch
// does locally. Every pod: restartPolicy Always, terminationGracePeriodSeconds =
// cluster.drainSeconds + 5, a preStop delay that leaves the whole drain inside the grace
// period; the gateway's probes on /health (liveness) and /ready (readiness), the workers'
// on grpc.health.v1; every binary gets --drain-seconds, attention workers also
// --expert-failover-ms and --expert-grace-ms, all equal to the cluster description's values.
func (c *checker) checkSelfHealing() {
	drain := c.clusterInt(30, "drainSeconds")
	failover := c.clusterInt(3000, "experts", "failoverMs")
	grace := c.clusterInt(20000, "experts", "restartGraceMs")
	for _, w := range c.workloads() {
		spec := podSpec(w)
		if rp := asString(spec["restartPolicy"]); rp != "" && rp != "Always" {
			c.fail(w, "restartPolicy %q (Deployments and StatefulSets restart containers: Always)", rp)
		}
		tgp := asInt(spec["terminationGracePeriodSeconds"])
		if tgp != drain+5 {
			c.fail(w, "terminationGracePeriodSeconds %v, want cluster.drainSeconds + 5 = %d", spec["terminationGracePeriodSeconds"], drain+5)
		}
		comp := podLabels(w)["app.kubernetes.io/component"]
		for _, ct := range asSlice(spec["containers"]) {
			ctm := asMap(ct)
			where := "container " + asString(ctm["name"])
			pre := asMap(dig(ctm, "lifecycle", "preStop"))
			handlers := 0
			for _, h := range []string{"exec", "httpGet", "tcpSocket", "sleep"} {
				if pre[h] != nil {
					handlers++
				}
			}
			if handlers != 1 {
				c.fail(w, "%s: lifecycle.preStop needs exactly one handler (a delay before SIGTERM while endpoints are removed)", where)
			}
			// A preStop `sleep N` (exec or the sleep action) counts against the grace period:
			// the drain must still fit, with a second to spare for the exit.
			delay := int64(-1)
			if cmd := toStrings(dig(pre, "exec", "command")); len(cmd) == 2 && cmd[0] == "sleep" {
				delay = asInt(cmd[1])
			} else if sl := dig(pre, "sleep", "seconds"); sl != nil {
				delay = asInt(sl)
			}
			if delay >= 0 && tgp >= 0 && delay+drain+1 > tgp {
				c.fail(w, "%s: preStop sleep %d s + drainSeconds %d + 1 s to exit exceed terminationGracePeriodSeconds %d", where, delay, drain, tgp)
			}
			// A probe's own grace period (a hung container is not drained) must still cover
			// the preStop delay and stay within the pod's.
			for _, kind := range []string{"startupProbe", "livenessProbe"} {
				if g := dig(ctm, kind, "terminationGracePeriodSeconds"); g != nil {
					if n := asInt(g); n < delay+1 || n > tgp {
						c.fail(w, "%s: %s.terminationGracePeriodSeconds %v: want more than the preStop delay (%d s), at most the pod's %d", where, kind, g, delay, tgp)
					}
				}
			}
			if comp == "gateway" {
				if p := asString(dig(ctm, "livenessProbe", "httpGet", "path")); p != "/health" {
					c.fail(w, "%s: livenessProbe path %q, want /health", where, p)
				}
				if p := asString(dig(ctm, "readinessProbe", "httpGet", "path")); p != "/ready" {
					c.fail(w, "%s: readinessProbe path %q, want /ready", where, p)
				}
			} else {
				for _, kind := range []string{"livenessProbe", "readinessProbe"} {
					if dig(ctm, kind, "grpc") == nil {
						c.fail(w, "%s: %s is not a gRPC (grpc.health.v1) probe", where, kind)
					}
				}
			}
		}
		want := map[string]int64{"--drain-seconds": drain}
		switch comp {
		case "expert-worker":
			continue // its flags come from the start-up command, checked below
		case "attention-worker":
			want["--expert-failover-ms"] = failover
			want["--expert-grace-ms"] = grace
		}
		args := c.containerArgs(w)
		for f, n := range want {
			if v, has := flagValue(args, f); !has || asInt(v) != n {
				c.fail(w, "%s %q, the cluster description says %d", f, v, n)
			}
		}
	}
	pods, _ := c.expertPods()
	for _, p := range pods {
		if v, has := flagValue(p.args, "--drain-seconds"); !has || asInt(v) != drain {
			c.fail(p.sts, "pod %d: --drain-seconds %q, cluster.drainSeconds is %d", p.ordinal, v, drain)
		}
	}
	c.notes = append(c.notes, fmt.Sprintf("drain %d s (grace %d s), expert failover %d ms, restart grace %d ms", drain, drain+5, failover, grace))
}
