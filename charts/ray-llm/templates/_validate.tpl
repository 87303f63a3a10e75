{{/* ray-llm.validate: cross-field rules values.schema.json cannot express; each fails `helm template` with the fix. */}}
{{- define "ray-llm.validate" -}}
{{- $w := .Values.worker }}
{{- if or (lt (int $w.replicas) (int $w.minReplicas)) (gt (int $w.replicas) (int $w.maxReplicas)) }}
{{- fail (printf "worker.replicas (%v) must lie between worker.minReplicas (%v) and worker.maxReplicas (%v)" $w.replicas $w.minReplicas $w.maxReplicas) }}
{{- end }}
{{- $a := .Values.serve.autoscaling }}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) }}
{{- fail (printf "serve.autoscaling.minReplicas (%v) must not exceed serve.autoscaling.maxReplicas (%v)" $a.minReplicas $a.maxReplicas) }}
{{- end }}
{{- if and .Values.gke.machine (ne (int $w.gpus) 8) }}
{{- fail (printf "gke.machine %s gives each worker a whole 8-GPU node for GPUDirect: set worker.gpus to 8 (got %v)" .Values.gke.machine $w.gpus) }}
{{- end }}
{{- if and (eq .Values.upgradeStrategy "NewClusterWithIncrementalUpgrade") (not .Values.autoscaler) }}
{{- fail "upgradeStrategy NewClusterWithIncrementalUpgrade needs the Ray autoscaler: set autoscaler to true" }}
{{- end }}
{{- if and (eq (int $w.gpus) 0) .Values.serve.accelerator.type }}
{{- fail (printf "serve.accelerator.type %s needs GPU workers: worker.gpus is 0 (use serve.accelerator.config.kind: cpu)" .Values.serve.accelerator.type) }}
{{- end }}
{{- end }}
