{{/*
Names. The full name is capped at 40 characters so that the longest derived names fit
Kubernetes' limits: "<fullname>-experts-r0" (StatefulSet, at most 52 so the
controller-revision-hash label fits 63) and its pods "<fullname>-experts-r0-NNN" (hostnames,
at most 63).
*/}}
{{- define "dsv3.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "dsv3.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dsv3.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels. Call with (dict "root" $ "component" "gateway" "extra" (dict ...)). */}}
{{- define "dsv3.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dsv3.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- range $k, $v := (default (dict) (index . "extra")) }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end }}

{{/* All labels of an object. Same arguments as dsv3.selectorLabels. */}}
{{- define "dsv3.labels" -}}
helm.sh/chart: {{ include "dsv3.chart" .root }}
{{ include "dsv3.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: dsv3
dsv3.io/cluster: {{ .root.Values.cluster.name }}
{{- end }}

{{- define "dsv3.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "dsv3.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dsv3.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Attention pools in use: prefill and decode, or both. */}}
{{- define "dsv3.attentionRoles" -}}
{{- if eq .Values.cluster.attention.mode "colocated" }}both{{ else }}prefill,decode{{ end }}
{{- end }}

{{/* Attention pool StatefulSet (and headless Service) name. (dict "root" $ "role" "prefill") */}}
{{- define "dsv3.poolName" -}}
{{- printf "%s-%s" (include "dsv3.fullname" .root) .role }}
{{- end }}

{{- define "dsv3.expertService" -}}
{{- printf "%s-experts" (include "dsv3.fullname" .) }}
{{- end }}

{{/* Expert StatefulSet of replica index r. (dict "root" $ "r" 0) */}}
{{- define "dsv3.expertStatefulSet" -}}
{{- printf "%s-experts-r%d" (include "dsv3.fullname" .root) (int .r) }}
{{- end }}

{{/* Stable DNS names of a pool's pods, comma-separated host:port. (dict "root" $ "role" "decode") */}}
{{- define "dsv3.poolAddresses" -}}
{{- $root := .root }}
{{- $name := include "dsv3.poolName" . }}
{{- $pool := index $root.Values.cluster.attention .role }}
{{- $out := list }}
{{- range $i := until (int $pool.replicas) }}
{{- $out = append $out (printf "%s-%d.%s.%s.svc.%s:%d" $name $i $name $root.Release.Namespace $root.Values.clusterDomain (int $pool.port)) }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/* Every expert pod (all replica StatefulSets), comma-separated host:port. */}}
{{- define "dsv3.expertAddresses" -}}
{{- $root := . }}
{{- $e := .Values.cluster.experts }}
{{- $svc := include "dsv3.expertService" . }}
{{- $out := list }}
{{- range $r := until (int (default 1 $e.replicasPerSlice)) }}
{{- $sts := include "dsv3.expertStatefulSet" (dict "root" $root "r" $r) }}
{{- range $i := until (int $e.workers) }}
{{- $out = append $out (printf "%s-%d.%s.%s.svc.%s:%d" $sts $i $svc $root.Release.Namespace $root.Values.clusterDomain (int $e.port)) }}
{{- end }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/* The expert-worker flag for the data plane: NCCL is negotiated over the gRPC server. */}}
{{- define "dsv3.expertServerTransport" -}}
{{- if eq .Values.cluster.experts.transport "ucx" }}ucx{{ else }}grpc{{ end }}
{{- end }}

{{- define "dsv3.tokenizerPath" -}}
{{- default .Values.cluster.model.path (index .Values.cluster.model "tokenizer") }}
{{- end }}

{{/* Component value, or the global one when the component leaves it empty.
     (dict "root" $ "pod" $podSection "key" "nodeSelector") */}}
{{- define "dsv3.podValue" -}}
{{- $v := index .pod .key }}
{{- if not $v }}{{ $v = index .root.Values .key }}{{ end }}
{{- if $v }}{{ toYaml $v }}{{ end }}
{{- end }}

{{/* Pod placement and identity, shared by every workload. (dict "root" $ "pod" $podSection) */}}
{{- define "dsv3.podCommon" -}}
serviceAccountName: {{ include "dsv3.serviceAccountName" .root }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "dsv3.podValue" (dict "root" .root "pod" .pod "key" "priorityClassName") }}
priorityClassName: {{ . }}
{{- end }}
{{- with include "dsv3.podValue" (dict "root" .root "pod" .pod "key" "nodeSelector") }}
nodeSelector:
  {{- . | nindent 2 }}
{{- end }}
{{- with include "dsv3.podValue" (dict "root" .root "pod" .pod "key" "tolerations") }}
tolerations:
  {{- . | nindent 2 }}
{{- end }}
{{- with include "dsv3.podValue" (dict "root" .root "pod" .pod "key" "affinity") }}
affinity:
  {{- . | nindent 2 }}
{{- end }}
{{- /* Deployments and StatefulSets only allow Always; written out because the kubelet
     restarting a crashed or liveness-failed container in place is the self-healing the
     local supervisor (dsv3-launch) gives: deploy/helm/README.md, "Self-healing on Kubernetes". */}}
restartPolicy: Always
{{- /* The preStop delay (dsv3.lifecycle), then --drain-seconds, then 2 s to exit. */}}
terminationGracePeriodSeconds: {{ add (include "dsv3.drainSeconds" .root) 5 }}
{{- end }}

{{/* cluster.drainSeconds (schema default 30). hasKey, not `default`: 0 is a valid value. */}}
{{- define "dsv3.drainSeconds" -}}
{{- if hasKey .Values.cluster "drainSeconds" }}{{ int .Values.cluster.drainSeconds }}{{ else }}30{{ end }}
{{- end }}

{{/* cluster.experts.failoverMs (schema default 3000). */}}
{{- define "dsv3.expertFailoverMs" -}}
{{- if hasKey .Values.cluster.experts "failoverMs" }}{{ int .Values.cluster.experts.failoverMs }}{{ else }}3000{{ end }}
{{- end }}

{{/* cluster.experts.restartGraceMs (schema default 20000; 0 is valid). */}}
{{- define "dsv3.expertGraceMs" -}}
{{- if hasKey .Values.cluster.experts "restartGraceMs" }}{{ int .Values.cluster.experts.restartGraceMs }}{{ else }}20000{{ end }}
{{- end }}

{{/* Container lifecycle: a preStop delay before SIGTERM. Deleting a pod removes it from
     its Services' endpoints at the same moment the kubelet starts stopping it, but
     kube-proxy, Ingress controllers and load balancers apply that removal a little later;
     a process that stopped taking connections at once would refuse the requests still
     being routed to it in between. So the kubelet first runs `sleep 3` (the process keeps
     serving meanwhile), then sends SIGTERM: the process reports not ready, drains for up
     to cluster.drainSeconds and exits 0. terminationGracePeriodSeconds (dsv3.podCommon)
     is drainSeconds + 5: these 3 s, the drain, and 2 s for the exit itself, so a full
     drain ends in a clean exit rather than SIGKILL. The kubelet stops liveness probes
     once deletion starts, so a draining (not ready) process is not restarted. */}}
{{- define "dsv3.lifecycle" -}}
lifecycle:
  preStop:
    exec:
      command: [sleep, "3"]
{{- end }}

{{/* Pod template annotations as YAML, empty when none. (dict "root" $ "pod" $podSection "extra" (dict ...)) */}}
{{- define "dsv3.podAnnotations" -}}
{{- $a := merge (dict) (default (dict) .extra) (default (dict) .pod.podAnnotations) (default (dict) .root.Values.podAnnotations) }}
{{- if $a }}{{ toYaml $a }}{{ end }}
{{- end }}

{{/* Container resources: values' resources plus nvidia.com/gpu = gpus in requests and limits.
     (dict "resources" $pod.resources "gpus" $pod.gpus) */}}
{{- define "dsv3.resources" -}}
{{- $res := deepCopy (default (dict) .resources) }}
{{- $gpus := int (default 0 .gpus) }}
{{- if gt $gpus 0 }}
{{- $limits := deepCopy (default (dict) (index $res "limits")) }}
{{- $requests := deepCopy (default (dict) (index $res "requests")) }}
{{- $_ := set $limits "nvidia.com/gpu" $gpus }}
{{- $_ := set $requests "nvidia.com/gpu" $gpus }}
{{- $_ := set $res "limits" $limits }}
{{- $_ := set $res "requests" $requests }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* Environment shared by the workers: pod identity and the UCX / NCCL settings. */}}
{{- define "dsv3.workerEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
{{- with .Values.ucx.tls }}
- name: UCX_TLS
  value: {{ . | quote }}
{{- end }}
{{- with .Values.ucx.netDevices }}
- name: UCX_NET_DEVICES
  value: {{ . | quote }}
{{- end }}
{{- range $k, $v := .Values.ucx.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- range $k, $v := .Values.nccl.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end }}

{{- define "dsv3.modelVolume" -}}
- name: model
{{- if eq .Values.modelVolume.type "hostPath" }}
  hostPath:
    path: {{ .Values.modelVolume.hostPath.path }}
    type: {{ default "Directory" .Values.modelVolume.hostPath.type }}
{{- else }}
  persistentVolumeClaim:
    claimName: {{ required "modelVolume.pvc.claimName is required" .Values.modelVolume.pvc.claimName }}
    readOnly: true
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "dsv3.modelVolumeMounts" -}}
- name: model
  mountPath: {{ .Values.modelVolume.mountPath }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* gRPC probes on a worker's port (grpc.health.v1). (dict "port" N "probes" $.Values.probes.worker) */}}
{{- define "dsv3.grpcProbes" -}}
{{- $port := int .port }}
{{- range $kind := list "startup" "liveness" "readiness" }}
{{ $kind }}Probe:
  grpc:
    port: {{ $port }}
  {{- toYaml (index $.probes $kind) | nindent 2 }}
  {{- if ne $kind "readiness" }}
  terminationGracePeriodSeconds: {{ include "dsv3.probeKillGraceSeconds" $ }}
  {{- end }}
{{- end }}
{{- end }}

{{/* A container killed because its startup or liveness probe failed is hung or never came
     up: draining it is pointless, so it gets 5 s (the preStop delay and 2 s) instead of
     the pod's drainSeconds + 5 before SIGKILL, and restarts sooner. Probe-level
     terminationGracePeriodSeconds: GA in Kubernetes 1.28, on by default since 1.25. */}}
{{- define "dsv3.probeKillGraceSeconds" -}}
5
{{- end }}

{{/* Checks that the schema cannot express. Rendered by templates/validate.yaml. */}}
{{- define "dsv3.validate" -}}
{{- $e := .Values.cluster.experts }}
{{- if gt (int $e.workers) (int $e.numExperts) }}
{{- fail (printf "cluster.experts.workers (%d) must not exceed cluster.experts.numExperts (%d): every worker needs at least one expert" (int $e.workers) (int $e.numExperts)) }}
{{- end }}
{{- $mount := trimSuffix "/" .Values.modelVolume.mountPath }}
{{- if not (or (eq .Values.cluster.model.path $mount) (hasPrefix (printf "%s/" $mount) .Values.cluster.model.path)) }}
{{- fail (printf "cluster.model.path (%s) must lie under modelVolume.mountPath (%s)" .Values.cluster.model.path $mount) }}
{{- end }}
{{- $tok := include "dsv3.tokenizerPath" . }}
{{- if not (or (eq $tok $mount) (hasPrefix (printf "%s/" $mount) $tok) (hasPrefix "/usr/share/dsv3/" $tok)) }}
{{- fail (printf "cluster.model.tokenizer (%s) must lie under modelVolume.mountPath (%s) or /usr/share/dsv3/ (in the image)" $tok $mount) }}
{{- end }}
{{- range $role := splitList "," (include "dsv3.attentionRoles" .) }}
{{- if not (index $.Values.cluster.attention $role) }}
{{- fail (printf "cluster.attention.%s is required in mode %s" $role $.Values.cluster.attention.mode) }}
{{- end }}
{{- end }}
{{- end }}
