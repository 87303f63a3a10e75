{{/* ray-llm.name: the chart name, or nameOverride; 63 characters at most (a DNS label). */}}
{{- define "ray-llm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ray-llm.fullname: the RayService name: fullnameOverride, else <release>-<name> (the release alone if it contains the name). */}}
{{- define "ray-llm.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* ray-llm.chart: chart name and version as the helm.sh/chart label wants them. */}}
{{- define "ray-llm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ray-llm.labels: the standard labels of every object the chart creates. */}}
{{- define "ray-llm.labels" -}}
helm.sh/chart: {{ include "ray-llm.chart" . }}
app.kubernetes.io/name: {{ include "ray-llm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* ray-llm.image: repository:tag[@digest] of the head and worker containers. */}}
{{- define "ray-llm.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}{{ with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* ray-llm.rayVersion: the Ray version of the image, the tag before its first "-" (2.60.0-py312-cu130 -> 2.60.0). */}}
{{- define "ray-llm.rayVersion" -}}
{{- splitList "-" .Values.image.tag | first }}
{{- end }}

{{/* ray-llm.serveConfig: serveConfigV2 as a dict (one Serve LLM application with one LLMConfig: llm_configs[0], the DP builder's llm_config, or the P/D builder's prefill_config and decode_config); rendered with toYaml. */}}
{{- define "ray-llm.serveConfig" -}}
{{- $s := .Values.serve }}
{{- $source := $s.model.source }}
{{- if .Values.modelCache.enabled }}{{ $source = printf "/models/%s" $s.model.source }}{{ end }}
{{- $loading := dict "model_id" $s.model.id "model_source" $source }}
{{- with $s.model.tokenizer }}{{ $_ := set $loading "tokenizer_source" . }}{{ end }}
{{- $autoscaling := dict "min_replicas" $s.autoscaling.minReplicas "max_replicas" $s.autoscaling.maxReplicas }}
{{- if not (kindIs "invalid" $s.autoscaling.targetOngoingRequests) }}
{{- $_ := set $autoscaling "target_ongoing_requests" $s.autoscaling.targetOngoingRequests }}
{{- end }}
{{- $deployment := dict "autoscaling_config" $autoscaling }}
{{- if not (kindIs "invalid" $s.requestRouterConfig) }}{{ $_ := set $deployment "request_router_config" $s.requestRouterConfig }}{{ end }}
{{- $llm := dict "model_loading_config" $loading "deployment_config" $deployment }}
{{- with $s.accelerator.type }}{{ $_ := set $llm "accelerator_type" . }}{{ end }}
{{- with $s.accelerator.config }}{{ $_ := set $llm "accelerator_config" . }}{{ end }}
{{- with $s.engineKwargs }}{{ $_ := set $llm "engine_kwargs" . }}{{ end }}
{{- with $s.envVars }}{{ $_ := set $llm "runtime_env" (dict "env_vars" .) }}{{ end }}
{{- $args := dict "llm_configs" (list $llm) }}
{{- if eq $s.importPath "ray.serve.llm:build_dp_openai_app" }}{{ $args = dict "llm_config" $llm }}{{ end }}
{{- if eq $s.importPath "ray.serve.llm:build_pd_openai_app" }}{{ $args = dict "prefill_config" $llm "decode_config" (deepCopy $llm) }}{{ end }}
{{- if not (kindIs "invalid" $s.ingressNumCpus) }}
{{- $_ := set $args "ingress_deployment_config" (dict "ray_actor_options" (dict "num_cpus" $s.ingressNumCpus)) }}
{{- end }}
{{- $app := dict "name" $s.applicationName "route_prefix" $s.routePrefix "import_path" $s.importPath "args" $args }}
{{- toYaml (dict "applications" (list $app)) }}
{{- end }}

{{/* ray-llm.hfTokenEnv: the HF_TOKEN env entry, read from the optional Secret. */}}
{{- define "ray-llm.hfTokenEnv" -}}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.hfToken.secretName }}
      key: {{ .Values.hfToken.key }}
      # Public models need no token: without the Secret the pods still start.
      optional: true
{{- end }}

{{/* ray-llm.podSecurityContext: the Ray pods' securityContext: the Ray image's user 1000:100 (docker/base-deps). */}}
{{- define "ray-llm.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 100
fsGroup: 100
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* ray-llm.containerSecurityContext: what the `restricted` Pod Security Standard asks of every container. */}}
{{- define "ray-llm.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities: {drop: [ALL]}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 100
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* ray-llm.modelCache.waitContainer: the workers' init container that waits for the fill Job's markers. */}}
{{- define "ray-llm.modelCache.waitContainer" -}}
- name: wait-for-model-cache
  image: {{ include "ray-llm.image" . }}
  command: [python, /opt/kuberay-llm/model_cache.py, wait]
  env:
    - {name: MODEL_CACHE_DIR, value: /models}
    - name: SERVE_CONFIG
      value: |
        {{- include "ray-llm.serveConfig" . | nindent 8 }}
  securityContext:
    {{- include "ray-llm.containerSecurityContext" . | nindent 4 }}
  resources:
    requests: {cpu: 100m, memory: 256Mi}
    limits: {cpu: 100m, memory: 256Mi}
  volumeMounts:
    - {name: model-cache, mountPath: /models, readOnly: true}
    - {name: model-cache-script, mountPath: /opt/kuberay-llm, readOnly: true}
{{- end }}
