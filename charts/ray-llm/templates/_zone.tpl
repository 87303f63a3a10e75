{{/*
ray-llm.worker.affinity: the one-zone rule of manifests/components/one-zone, for an engine that spans worker pods
(tensor x pipeline x data parallel GPUs > worker.gpus): required pod affinity on topology.kubernetes.io/zone to
the other workers of the same RayCluster (KubeRay labels ray.io/node-type and ray.io/cluster; matchLabelKeys
takes the pod's own ray.io/cluster value, Kubernetes >= 1.31). worker.sameZone "auto" decides from the engine,
true/false force it. Empty when not needed.
*/}}
{{- define "ray-llm.worker.affinity" -}}
{{- $w := .Values.worker }}
{{- $ek := .Values.serve.engineKwargs | default dict }}
{{- $need := mul (int (default 1 $ek.tensor_parallel_size)) (int (default 1 $ek.pipeline_parallel_size)) (int (default 1 $ek.data_parallel_size)) }}
{{- $sameZone := $w.sameZone }}
{{- if eq (toString $sameZone) "auto" }}
{{- $sameZone = and (gt (int $w.gpus) 0) (gt (int $need) (int $w.gpus)) }}
{{- end }}
{{- if $sameZone }}
podAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: topology.kubernetes.io/zone
      labelSelector:
        matchLabels:
          ray.io/node-type: worker
      matchLabelKeys:
        - ray.io/cluster
{{- end }}
{{- end }}
