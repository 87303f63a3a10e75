{{/*
GKE A3 High (GPUDirect-TCPX) and A3 Mega (GPUDirect-TCPXO) pieces of the worker pod: the same annotations,
sidecar, volumes and NCCL environment as manifests/components/gke-a3 and gke-a3-mega (GKE's TCPX/TCPXO guides).
*/}}

{{/* ray-llm.gke.nodeSelector: GKE's accelerator label of the machine and local-SSD ephemeral storage. */}}
{{- define "ray-llm.gke.nodeSelector" -}}
cloud.google.com/gke-accelerator: {{ ternary "nvidia-h100-mega-80gb" "nvidia-h100-80gb" (eq .Values.gke.machine "a3-mega") }}
cloud.google.com/gke-ephemeral-storage-local-ssd: "true"
{{- end }}

{{/* ray-llm.gke.annotations: the pod joins vpc1..vpcN through eth1..ethN; the daemon sees the GPU devices. */}}
{{- define "ray-llm.gke.annotations" -}}
{{- $mega := eq .Values.gke.machine "a3-mega" }}
{{- $nics := ternary 8 4 $mega }}
networking.gke.io/default-interface: eth0
networking.gke.io/interfaces: |
  [
    {"interfaceName":"eth0","network":"default"},
  {{- range $i := untilStep 1 (int (add1 $nics)) 1 }}
    {"interfaceName":"eth{{ $i }}","network":"vpc{{ $i }}"}{{ if lt $i $nics }},{{ end }}
  {{- end }}
  ]
devices.gke.io/container.{{ ternary "tcpxo-daemon" "tcpx-daemon" $mega }}: |+
  {{- range $i := until 8 }}
  - path: /dev/nvidia{{ $i }}
  {{- end }}
  - path: /dev/nvidiactl
  - path: /dev/nvidia-uvm
  {{- if $mega }}
  - path: /dev/dmabuf_import_helper
  {{- end }}
{{- end }}

{{/* ray-llm.gke.sidecar: the tcpx(o)-daemon container that runs the GPUDirect receive data path. */}}
{{- define "ray-llm.gke.sidecar" -}}
{{- if eq .Values.gke.machine "a3-mega" }}
- name: tcpxo-daemon
  image: {{ .Values.gke.tcpxoDaemonImage }}
  command: ["/bin/sh", "-c"]
  args:
    - |
      set -ex
      chmod 755 /fts/entrypoint_rxdm_container.sh
      /fts/entrypoint_rxdm_container.sh --num_hops=2 --num_nics=8 --uid= --alsologtostderr
  # Privileged by design: the GPUDirect receive daemon programs the NICs' flow steering and maps GPU memory
  # for DMA (GKE's TCPX/TCPXO guides run it so). Only the Ray container is hardened (components/pod-security):
  # its namespace needs the `privileged` Pod Security level (baseline forbids privileged containers and hostPath).
  securityContext:
    privileged: true
  env:
    - name: LD_LIBRARY_PATH
      value: /usr/local/nvidia/lib64
  volumeMounts:
    - name: nvidia-install-dir
      mountPath: /usr/local/nvidia
  resources:
    requests: {cpu: 500m, memory: 1Gi}
    limits: {cpu: 500m, memory: 1Gi}
{{- else }}
- name: tcpx-daemon
  image: {{ .Values.gke.tcpxDaemonImage }}
  command:
    - /tcpgpudmarxd/build/app/tcpgpudmarxd
    - --gpu_nic_preset
    - a3vm
    - --gpu_shmem_type
    - fd
    - --uds_path
    - /run/tcpx
    - --setup_param
    - "--verbose 128 2 0"
  # Privileged by design: the GPUDirect receive daemon programs the NICs' flow steering and maps GPU memory
  # for DMA (GKE's TCPX/TCPXO guides run it so). Only the Ray container is hardened (components/pod-security):
  # its namespace needs the `privileged` Pod Security level (baseline forbids privileged containers and hostPath).
  securityContext:
    privileged: true
  env:
    - name: LD_LIBRARY_PATH
      value: /usr/local/nvidia/lib64
  volumeMounts:
    - name: nvidia-libraries
      mountPath: /usr/local/nvidia/lib64
      readOnly: true
    - name: tcpx-socket
      mountPath: /run/tcpx
    - name: sys
      mountPath: /hostsysfs
    - name: proc-sys
      mountPath: /hostprocsysfs
  resources:
    requests: {cpu: 500m, memory: 1Gi}
    limits: {cpu: 500m, memory: 1Gi}
{{- end }}
{{- end }}

{{/* ray-llm.gke.volumeMounts: what the Ray worker container mounts for the NCCL plugin. */}}
{{- define "ray-llm.gke.volumeMounts" -}}
{{- if eq .Values.gke.machine "a3-mega" }}
- name: nvidia-install-dir
  mountPath: /usr/local/nvidia
- name: aperture-devices
  mountPath: /dev/aperture_devices
{{- else }}
- name: nvidia-libraries
  mountPath: /usr/local/nvidia/lib64
  readOnly: true
- name: tcpx-socket
  mountPath: /run/tcpx
{{- end }}
{{- end }}

{{/* ray-llm.gke.volumes: host paths of GKE's NVIDIA install and the daemon's socket/devices. */}}
{{- define "ray-llm.gke.volumes" -}}
{{- if eq .Values.gke.machine "a3-mega" }}
- name: nvidia-install-dir
  hostPath:
    path: /home/kubernetes/bin/nvidia
- name: aperture-devices
  hostPath:
    path: /dev/aperture_devices
{{- else }}
- name: nvidia-libraries
  hostPath:
    path: /home/kubernetes/bin/nvidia/lib64
- name: tcpx-socket
  emptyDir: {}
- name: sys
  hostPath:
    path: /sys
- name: proc-sys
  hostPath:
    path: /proc/sys
{{- end }}
{{- end }}

{{/* ray-llm.gke.ncclEnv: NCCL settings of GKE's guides for a3-highgpu-8g (TCPX) and a3-megagpu-8g (TCPXO). */}}
{{- define "ray-llm.gke.ncclEnv" -}}
- {name: LD_LIBRARY_PATH, value: /usr/local/nvidia/lib64}
- {name: NCCL_SOCKET_IFNAME, value: eth0}
{{- if eq .Values.gke.machine "a3-mega" }}
- {name: NCCL_FASTRAK_CTRL_DEV, value: eth0}
- {name: NCCL_FASTRAK_IFNAME, value: "eth1,eth2,eth3,eth4,eth5,eth6,eth7,eth8"}
- {name: NCCL_FASTRAK_NUM_FLOWS, value: "2"}
- {name: NCCL_FASTRAK_USE_SNAP, value: "1"}
- {name: NCCL_FASTRAK_USE_LLCM, value: "1"}
- {name: NCCL_FASTRAK_LLCM_DEVICE_DIRECTORY, value: /dev/aperture_devices}
- {name: NCCL_FASTRAK_ENABLE_CONTROL_CHANNEL, value: "0"}
- {name: NCCL_FASTRAK_ENABLE_HOTPATH_LOGGING, value: "0"}
- {name: NCCL_FASTRAK_PLUGIN_ACCEPT_TIMEOUT_MS, value: "600000"}
- {name: NCCL_TUNER_PLUGIN, value: libnccl-tuner.so}
- {name: NCCL_TUNER_CONFIG_PATH, value: /usr/local/nvidia/lib64/a3plus_tuner_config.textproto}
- {name: NCCL_SHIMNET_GUEST_CONFIG_CHECKER_CONFIG_FILE, value: /usr/local/nvidia/lib64/a3plus_guest_config.textproto}
- {name: NCCL_CROSS_NIC, value: "0"}
- {name: NCCL_NET_GDR_LEVEL, value: PIX}
- {name: NCCL_P2P_NET_CHUNKSIZE, value: "131072"}
- {name: NCCL_P2P_PCI_CHUNKSIZE, value: "131072"}
- {name: NCCL_P2P_NVL_CHUNKSIZE, value: "524288"}
- {name: NCCL_NVLS_ENABLE, value: "0"}
- {name: NCCL_BUFFSIZE, value: "8388608"}
{{- else }}
- {name: NCCL_GPUDIRECTTCPX_CTRL_DEV, value: eth0}
- {name: NCCL_GPUDIRECTTCPX_SOCKET_IFNAME, value: "eth1,eth2,eth3,eth4"}
- {name: NCCL_GPUDIRECTTCPX_TX_BINDINGS, value: "eth1:8-21,112-125;eth2:8-21,112-125;eth3:60-73,164-177;eth4:60-73,164-177"}
- {name: NCCL_GPUDIRECTTCPX_RX_BINDINGS, value: "eth1:22-35,126-139;eth2:22-35,126-139;eth3:74-87,178-191;eth4:74-87,178-191"}
- {name: NCCL_GPUDIRECTTCPX_UNIX_CLIENT_PREFIX, value: /run/tcpx}
- {name: NCCL_GPUDIRECTTCPX_PROGRAM_FLOW_STEERING_WAIT_MICROS, value: "50000"}
- {name: NCCL_GPUDIRECTTCPX_FORCE_ACK, value: "0"}
- {name: NCCL_CROSS_NIC, value: "0"}
- {name: NCCL_NET_GDR_LEVEL, value: PIX}
- {name: NCCL_P2P_PXN_LEVEL, value: "0"}
- {name: NCCL_DYNAMIC_CHUNK_SIZE, value: "524288"}
- {name: NCCL_P2P_NET_CHUNKSIZE, value: "524288"}
- {name: NCCL_BUFFSIZE, value: "4194304"}
{{- end }}
{{- end }}
