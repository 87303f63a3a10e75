"""Check 4i: vLLM's own scheduler configuration, built offline from engine_kwargs (where vLLM is installed).

vLLM builds its SchedulerConfig when the engine starts, on the GPU node, after the image pull and the weight
download, and refuses combinations of the batch budget, the context length and chunked prefill there (vLLM 0.29
vllm/config/scheduler.py SchedulerConfig.verify_max_model_len, run by its __post_init__):
- max_num_batched_tokens below max_model_len with chunked prefill off;
- max_num_batched_tokens below max_num_seqs;
- long_prefill_token_threshold above max_model_len;
and warns when max_num_batched_tokens exceeds max_num_seqs × max_model_len. This check constructs that very
class with the values the user wrote and reports what it raises (and the warning it logs), in vLLM's words.

What vLLM derives from the device or the model's config is not decided here: an unset max_num_batched_tokens or
max_num_seqs takes a default from the GPU's memory and the usage context (EngineArgs.get_batch_defaults), and
chunked prefill's default is the model's (ModelConfig.is_chunked_prefill_supported). So the check runs only on
values the user set, and stands in values that cannot trip a check for the others (max_num_seqs 1; a batch
budget of at least max_model_len); chunked prefill counts as off only where engine_kwargs turns it off.
"""

from __future__ import annotations

import logging

from kuberay_llm.preflight.findings import ERROR, WARNING, Finding
from kuberay_llm.preflight.rayservice import RayServiceFacts

SCHEDULER_LOGGER = "vllm.config.scheduler"


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def scheduler_problems(engine: dict, max_model_len: int) -> tuple[list[str], list[str]] | None:
    """(what vLLM's SchedulerConfig raises, what it warns) for these engine_kwargs, or None without vLLM."""
    from kuberay_llm.vllm_check import quiet_import

    try:
        with quiet_import(VLLM_CONFIGURE_LOGGING="0"):  # checking should not configure vLLM's logging
            import pydantic
            from vllm.config import SchedulerConfig
    except ImportError:
        return None

    def given(name):
        value = engine.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    seqs = given("max_num_seqs")
    batched = given("max_num_batched_tokens")
    chunked = engine.get("enable_chunked_prefill")
    kwargs = {"max_num_seqs": seqs or 1,
              "max_num_batched_tokens": batched if batched is not None else max(max_model_len, seqs or 1),
              "enable_chunked_prefill": chunked if isinstance(chunked, bool) else True,
              "long_prefill_token_threshold": given("long_prefill_token_threshold") or 0}
    logger = logging.getLogger(SCHEDULER_LOGGER)
    capture, level, propagate = _Capture(), logger.level, logger.propagate
    logger.addHandler(capture)
    logger.setLevel(logging.WARNING)
    logger.propagate = False  # its INFO and WARNING lines are this check's to report, not to print
    try:
        SchedulerConfig(max_model_len=max_model_len, is_encoder_decoder=False, **kwargs)
        errors = []
    except pydantic.ValidationError as exc:
        errors = [str(e.get("msg", "")).removeprefix("Value error, ").rstrip(". ") for e in exc.errors()]
    except ValueError as exc:
        errors = [str(exc).rstrip(". ")]
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
        logger.propagate = propagate
    return errors, [m.rstrip(". ") for m in capture.messages]


# (what vLLM's message starts with or contains, the field it is about, the fix)
FIXES = (
    ("is smaller than max_model_len", "max_num_batched_tokens",
     "raise max_num_batched_tokens to max_model_len or more, or remove enable_chunked_prefill: false (chunked "
     "prefill splits a long prompt over several steps)"),
    ("must be greater than or equal to max_num_seqs", "max_num_batched_tokens",
     "raise max_num_batched_tokens to max_num_seqs or more, or lower max_num_seqs"),
    ("long_prefill_token_threshold", "long_prefill_token_threshold",
     "lower long_prefill_token_threshold to max_model_len or less"),
)


def _about(message: str) -> tuple[str, str]:
    for marker, name, fix in FIXES:
        if marker in message:
            return name, fix
    return "max_num_batched_tokens", "change the engine_kwargs as vLLM says"


def rule_vllm_scheduler_config(source, rs: RayServiceFacts, ctx) -> list[Finding]:
    obj, out = f"RayService/{rs.name}", []
    for e in rs.llm_entries:
        length = e.max_model_len
        if not length:
            continue  # rule_max_model_len_set reports it
        found = scheduler_problems(e.engine, length)
        if found is None:
            return []
        errors, warnings = found
        kwargs = f"{e.path}.engine_kwargs"
        for message in errors:
            name, fix = _about(message)
            out.append(Finding(ERROR, source, obj, f"{kwargs}.{name}={e.engine.get(name)}",
                               f"vLLM's SchedulerConfig refuses it at start-up: {message}", fix))
        for message in warnings:
            out.append(Finding(WARNING, source, obj, f"{kwargs}.max_num_batched_tokens="
                               f"{e.engine.get('max_num_batched_tokens')}", f"vLLM warns at start-up: {message}",
                               "lower max_num_batched_tokens to max_num_seqs × max_model_len or less"))
    return out


RULES = [rule_vllm_scheduler_config]
