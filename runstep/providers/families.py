"""What a model family accepts, by the name sent upstream.

- The completion budget: OpenAI's models take ``max_completion_tokens`` (its reasoning models
  refuse ``max_tokens``); other families' servers (Ollama, llama.cpp, Mistral, ...) know
  ``max_tokens``. An upstream's ``token_limit_param`` overrides the guess.
- ``reasoning_effort`` goes only to reasoning models (others refuse it); an upstream's
  ``reasoning_models`` patterns replace the built-in list.
"""

from fnmatch import fnmatchcase

from runstep.providers.upstreams import TokenLimitParam

OPENAI = ("gpt-*", "chatgpt-*", "o[0-9]*", "ft:*", "codex-*", "computer-use-*")
REASONING = ("o[0-9]*", "gpt-5*", "gpt-oss*", "codex-*")
NOT_REASONING = ("gpt-5-chat*",)


def _any(model: str, patterns: tuple[str, ...]) -> bool:
    name = model.lower()
    return any(fnmatchcase(name, pattern.lower()) for pattern in patterns)


def token_limit_param(model: str, configured: TokenLimitParam = "auto") -> str:
    """The request field that carries the completion budget for ``model``."""
    if configured != "auto":
        return configured
    return "max_completion_tokens" if _any(model, OPENAI) else "max_tokens"


def is_reasoning(model: str, patterns: tuple[str, ...] | None = None) -> bool:
    """Whether ``model`` takes ``reasoning_effort``."""
    if patterns is not None:
        return _any(model, patterns)
    return _any(model, REASONING) and not _any(model, NOT_REASONING)
