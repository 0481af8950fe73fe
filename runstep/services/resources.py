"""Tool resources of assistants and threads: validation and the stored form."""

from typing import Any

from runstep.errors import InvalidRequest
from runstep.protocol.tools import ToolResources


def tool_resources_wire(
    resources: ToolResources | None, current: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Merge requested resources over ``current``: each given list replaces the stored one."""
    merged = dict(current or {})
    if resources is None:
        return merged
    if resources.code_interpreter is not None:
        merged["code_interpreter"] = {"file_ids": list(resources.code_interpreter.file_ids)}
    file_search = resources.file_search
    if file_search is not None:
        if file_search.vector_stores:
            raise InvalidRequest(
                "The vector_stores helper is not supported yet; create the vector store first "
                "and pass vector_store_ids.",
                param="tool_resources.file_search.vector_stores",
            )
        merged["file_search"] = {"vector_store_ids": list(file_search.vector_store_ids or [])}
    return merged
