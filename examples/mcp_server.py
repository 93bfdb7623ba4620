"""An MCP server whose tools run in Capsule's sandbox.

    pip install ./sdk/python mcp
    python examples/mcp_server.py          # speaks MCP on stdin/stdout

Decorator order: the framework's decorator outermost, ``@capsule.tool`` directly on
the ``def``, so the framework registers the sandboxed wrapper, whose name, docstring
and signature are the function's own. Each call runs under the built-in default
policy: the workspace (the directory the server starts in) is readable and writable,
the rest of the home directory is not, and there is no network.
"""

from __future__ import annotations

import os
from pathlib import Path

import capsule

try:  # mcp >= 2
    from mcp.server.mcpserver import MCPServer
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef]

server = MCPServer("capsule-tools")


@server.tool()
@capsule.tool(timeout=30)
def word_count(path: str) -> int:
    """Count the words in a text file of the workspace."""
    return len(Path(path).read_text().split())


@server.tool()
@capsule.tool(timeout=30)
async def list_files(folder: str = ".") -> list[str]:
    """List the names in a folder of the workspace."""
    return sorted(os.listdir(folder))


@server.tool()
@capsule.tool(timeout=30)
def read_secret_file(path: str) -> str:
    """Read any file: the sandbox decides (a file outside the workspace is refused)."""
    return Path(path).read_text()


if __name__ == "__main__":
    server.run()
