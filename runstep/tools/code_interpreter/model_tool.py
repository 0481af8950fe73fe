"""The hosted ``code_interpreter`` tool as the model sees it: its function definition, the
code decoded from the arguments while they stream, what the model reads back, and the
``sandbox:/mnt/data/...`` links of its answer that become ``file_path`` annotations."""

import json
import re
from collections.abc import Mapping
from typing import Any

NAME = "code_interpreter"
SANDBOX_PREFIX = "sandbox:/mnt/data/"

MODEL_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": NAME,
        "description": (
            "Run Python code in a stateful sandboxed session (variables persist between calls; "
            "numpy, pandas and matplotlib are installed; no internet). The user's files are in "
            "/mnt/data. Figures you show are displayed to the user. Files you save under "
            "/mnt/data are given to the user: link them as sandbox:/mnt/data/<name>."
        ),
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The Python code to run."}},
            "required": ["code"],
        },
    },
}

_CODE_KEY = re.compile(r'"code"\s*:\s*"')
_INCOMPLETE_ESCAPE = re.compile(r"(?<!\\)(\\\\)*\\(u[0-9a-fA-F]{0,3})?$")
_HIGH_SURROGATE_AT_END = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}$")


def code_in(arguments: str) -> str:
    """The code of complete arguments (``{"code": ...}``; raw text that is not JSON is taken
    as the code itself, as some models send it)."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get("code"), str):
        return str(parsed["code"])
    return arguments if not isinstance(parsed, dict) else ""


def partial_code(arguments: str) -> str:
    """As much of the ``code`` string as the arguments streamed so far decode to."""
    key = _CODE_KEY.search(arguments)
    if key is None:
        return ""
    body, position = [], key.end()
    while position < len(arguments) and arguments[position] != '"':
        step = 2 if arguments[position] == "\\" else 1
        body.append(arguments[position : position + step])
        position += step
    text = "".join(body)
    if position >= len(arguments):  # still open: drop an escape cut in the middle
        text = _INCOMPLETE_ESCAPE.sub("", text)
        text = _HIGH_SURROGATE_AT_END.sub("", text)
    try:
        return str(json.loads(f'"{text}"'))
    except ValueError:
        return ""


class CodeStream:
    """Turns argument fragments into the new code they add (for ``input`` step deltas)."""

    def __init__(self) -> None:
        self.arguments = ""
        self._sent = 0

    def feed(self, fragment: str) -> str:
        self.arguments += fragment
        code = partial_code(self.arguments)
        new, self._sent = code[self._sent :], max(self._sent, len(code))
        return new


def model_output(logs: str, error: str | None, files: list[str], images: int) -> str:
    """What the model reads back from one execution."""
    lines = [logs.rstrip() or "(no output)"]
    if error and error not in logs:
        lines.append(error)
    if files:
        lines.append("Files saved for the user: " + ", ".join(SANDBOX_PREFIX + f for f in files))
    if images:
        lines.append(f"Images shown to the user: {images}")
    return "\n".join(lines)


def file_paths(text: str, files: Mapping[str, str]) -> list[dict[str, Any]]:
    """``file_path`` annotations for the ``sandbox:/mnt/data/<name>`` links of ``text`` to
    files the run's code saved (``files``: name → file id), in order."""
    found = []
    for name, file_id in files.items():
        link = SANDBOX_PREFIX + name
        for match in re.finditer(re.escape(link) + r"(?![\w.-])", text):
            found.append(
                {
                    "type": "file_path",
                    "text": link,
                    "start_index": match.start(),
                    "end_index": match.end(),
                    "file_path": {"file_id": file_id},
                }
            )
    return sorted(found, key=lambda annotation: annotation["start_index"])
