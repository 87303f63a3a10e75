"""Check 4h: a gated Hugging Face repository is deployed with a token the replicas can read.

A gated repository serves its files only to an account that accepted the model's license, authenticated with a
token: without one, Ray Serve LLM's download on the replica's node fails with `401 ... Cannot access gated repo`
after the GPU pods started (`kuberay-llm wait` reports it then). huggingface_hub reads the token from HF_TOKEN
(or the older HUGGING_FACE_HUB_TOKEN), or from the file HF_TOKEN_PATH names (huggingface_hub constants.py).

Which repositories are gated is the model page's own statement: "You need to agree to share your contact
information to access this model" above the license. The meta-llama organization gates its repositories behind the
Llama license (https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct,
https://huggingface.co/meta-llama/Llama-3.1-70B-Instruct: the Llama 3.1 Community License); the catalog's mirrors (unsloth/...) and the Qwen, DeepSeek and openai
repositories do not. A model_source that is a path (the model-cache component's /models/...) or a cloud URI
(s3://, gs://) needs no Hugging Face token on the replicas.
"""

from __future__ import annotations

from kuberay_llm.preflight.findings import ERROR, Finding
from kuberay_llm.preflight.rayservice import RayGroup, RayServiceFacts, items, mapping

# Organizations whose every repository is gated, with the model page that says so.
GATED_ORGANIZATIONS = {"meta-llama": "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct"}
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")
SECRET = "hf-token"


def gated_page(repository: str | None) -> str | None:
    """The page that shows `repository` is gated, or None for an ungated repository, a path or a URI."""
    if not repository or repository.startswith(("/", ".")) or "://" in repository:
        return None
    organization = repository.split("/", 1)[0]
    return GATED_ORGANIZATIONS.get(organization) if "/" in repository else None


def _has_token(container: dict) -> bool:
    for env in items(container.get("env")):
        if isinstance(env, dict) and env.get("name") in TOKEN_ENV and (env.get("value") or env.get("valueFrom")):
            return True
    # envFrom brings a whole Secret or ConfigMap: its keys are not in the manifest, so it may hold the token.
    return any(isinstance(e, dict) and (e.get("secretRef") or e.get("configMapRef")) for e in items(container.get("envFrom")))


def _fix(kind: str) -> str:
    create = f"kubectl create secret generic {SECRET} --from-literal=hf_token=<your token>"
    if kind == "chart":
        return f"create the Secret {SECRET} ({create}) and set hfToken.enabled: true in the values"
    if kind == "overlay":
        return (f"create the Secret {SECRET} ({create}) and add ../../manifests/components/hf-token to the overlay's "
                "components")
    return (f"create the Secret {SECRET} ({create}) and give the Ray containers env HF_TOKEN from it "
            f"(valueFrom.secretKeyRef {{name: {SECRET}, key: hf_token}})")


def rule_gated_model_has_a_token(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    obj, out = f"RayService/{rs.name}", []
    for e in rs.llm_entries:
        repository = e.model_source
        page = gated_page(repository)
        if page is None:
            continue
        apps = rs.serve.applications if rs.serve else ()
        app_env = mapping(apps[e.app_index].runtime_env.get("env_vars")) if e.app_index < len(apps) else {}
        if any(e.env_vars.get(name) or app_env.get(name) for name in TOKEN_ENV):
            continue
        hosts: list[RayGroup] = list(rs.groups) if e.on_cpu else list(rs.gpu_workers)
        missing = [g for g in hosts if not (g.containers and _has_token(g.containers[0]))]
        if not missing:
            continue
        names = ", ".join("head" if g.path.endswith("headGroupSpec") else g.name for g in missing)
        field = "model_source" if "model_source" in e.loading else "model_id"
        out.append(Finding(ERROR, source, obj, f"{e.path}.model_loading_config.{field}={repository}",
                           f"is a gated Hugging Face repository ({page}: its files need an accepted license and a "
                           f"token), but the Ray container of {names} has no HF_TOKEN: the download on the "
                           "replica's node fails with 401 Cannot access gated repo after the pods start",
                           _fix(ctx.get("source_kind", "file"))))
    return out


RULES = [rule_gated_model_has_a_token]
