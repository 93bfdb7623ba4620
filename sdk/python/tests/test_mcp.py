"""A real MCP server (examples/mcp_server.py) whose tools are @capsule.tool functions:
it lists them with their parameters and calls them in the sandbox, in process and
through an MCP client over stdio."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest

from conftest import REPO

mcp = pytest.importorskip("mcp") if os.environ.get("CI") != "true" else __import__("mcp")
sys.path.insert(0, str(REPO / "examples"))
import mcp_server  # noqa: E402


def _text(result) -> str:
    content = result.content if hasattr(result, "content") else result[0]
    return "".join(getattr(c, "text", "") for c in content)


def _schema(tool):
    # mcp 2.x: input_schema; 1.x: inputSchema.
    return getattr(tool, "input_schema", None) or tool.inputSchema


def test_server_lists_the_tools_with_their_parameters():
    tools = {t.name: t for t in asyncio.run(mcp_server.server.list_tools())}
    assert {"word_count", "list_files", "read_secret_file"} <= set(tools)
    schema = _schema(tools["word_count"])
    assert schema["properties"]["path"]["type"] == "string" and schema["required"] == ["path"]
    assert tools["word_count"].description.startswith("Count the words")
    assert _schema(tools["list_files"])["properties"]["folder"]["default"] == "."


def test_server_calls_them_in_the_sandbox(workspace):
    (workspace / "notes.txt").write_text("one two three")
    result = asyncio.run(mcp_server.server.call_tool("word_count", {"path": "notes.txt"}))
    assert "3" in _text(result)
    result = asyncio.run(mcp_server.server.call_tool("list_files", {}))
    assert "notes.txt" in _text(result)
    secret = Path.home() / f".capsule-pytest-secret-{uuid.uuid4().hex}"
    secret.write_text("api-key")
    try:
        assert mcp_server.read_secret_file.__wrapped__(str(secret)) == "api-key"
        try:
            result = asyncio.run(mcp_server.server.call_tool("read_secret_file", {"path": str(secret)}))
            text = _text(result)
            assert "api-key" not in text and "Permission denied" in text
        except Exception as exc:  # mcp 2.x raises, with the tool's own error as the cause
            chain = []
            while exc is not None:
                chain.append(exc)
                exc = exc.__cause__ or exc.__context__
            assert any(isinstance(e, PermissionError) for e in chain), chain
            assert not any("api-key" in str(e) for e in chain)
    finally:
        secret.unlink()


def test_stdio_client_round_trip(workspace):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    (workspace / "a.txt").write_text("alpha beta")

    async def session():
        params = StdioServerParameters(
            command=sys.executable,
            args=[str(REPO / "examples" / "mcp_server.py")],
            env=dict(os.environ),
            cwd=str(workspace),
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as client:
                await client.initialize()
                listed = await client.list_tools()
                called = await client.call_tool("word_count", {"path": "a.txt"})
                return [t.name for t in listed.tools], called

    names, called = asyncio.run(asyncio.wait_for(session(), 120))
    assert "word_count" in names
    assert "2" in _text(called) and not getattr(called, "is_error", getattr(called, "isError", False))
