"""Drives `rag mcp` with the official MCP Python SDK, as an agent would.

Usage: client.py RAG_BINARY WORK_DIR [STORE...]
The environment carries RAG_DATA_DIR and OLLAMA_HOST for the server. Prints
one JSON line per check to stdout; any failed check raises, and the exit
status is non-zero.
"""

import json
import os
import sys

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


def check(name, condition, detail=""):
    print(json.dumps({"check": name, "ok": bool(condition)}), flush=True)
    if not condition:
        raise AssertionError(f"{name}: {detail}")


def text_of(result):
    return "".join(getattr(block, "text", "") for block in result.content)


async def main(rag, work, stores):
    env = {key: os.environ[key] for key in ("RAG_DATA_DIR", "OLLAMA_HOST", "PATH") if key in os.environ}
    params = StdioServerParameters(command=rag, args=["mcp"], env=env, cwd=work)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            check("server names itself", init.server_info.name == "vector-rag", init.server_info)

            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            check("four tools", set(tools) == {"search", "get", "list_stores", "index_status"}, list(tools))
            schema = tools["search"].input_schema
            check("search schema requires query", "query" in schema.get("required", []), schema)
            check("search schema describes max_chars", "max_chars" in schema["properties"], schema)

            listed = await session.call_tool("list_stores", {})
            names = [s["name"] for s in listed.structured_content["stores"]]
            check("list_stores lists every store", sorted(names) == sorted(stores), names)
            check("list_stores has models", all(s.get("model") for s in listed.structured_content["stores"]))

            found = await session.call_tool("search", {"query": "watering tomatoes", "k": 5})
            check("search succeeds", not found.is_error, text_of(found))
            hits = found.structured_content["hits"]
            check("search finds the garden note first", hits and hits[0]["file_path"] == "garden/tomatoes.md", hits)
            check("hits from both stores", {h["store"] for h in hits} == set(stores), hits)
            check("text rendering names store and file", "[garden] garden/tomatoes.md" in text_of(found))

            one = await session.call_tool("search", {"query": "bread", "stores": ["kitchen"], "k": 3, "mode": "lexical"})
            check("search one store, lexical", one.structured_content["hits"][0]["store"] == "kitchen", text_of(one))

            tight = await session.call_tool("search", {"query": "heat", "k": 10, "max_chars": 600})
            check("max_chars bounds the answer", len(json.dumps(tight.structured_content)) <= 600 and len(text_of(tight)) <= 600)
            check("a cut answer says so", tight.structured_content["truncated"] is True, tight.structured_content)

            huge = await session.call_tool("search", {"query": "heat", "k": 1000000})
            check("a huge k is bounded", not huge.is_error and len(huge.structured_content["hits"]) <= 100)
            check("and says so", any("lowered" in n for n in huge.structured_content["notes"]), huge.structured_content)

            key = hits[0]["key"]
            got = await session.call_tool("get", {"store": hits[0]["store"], "key": key, "context": 1})
            check("get returns the hit's full text", not got.is_error and any(
                c["key"] == key and not c["context"] and "tomatoes" in c["content"].lower()
                for c in got.structured_content["chunks"]), text_of(got))
            by_lines = await session.call_tool(
                "get", {"store": "garden", "file_path": "garden/tomatoes.md", "line_start": 1, "line_end": 2})
            check("get by lines", not by_lines.is_error and by_lines.structured_content["chunks"], text_of(by_lines))

            status = await session.call_tool("index_status", {"store": "garden"})
            check("index_status sees the new and changed files",
                  status.structured_content["new"] == 1 and status.structured_content["changed"] == 1
                  and status.structured_content["deleted"] == 0 and status.structured_content["unchanged"] == 1
                  and status.structured_content["chunks_to_embed"] >= 2
                  and status.structured_content["new_files"] == ["garden/basil.md"], status.structured_content)

            # Bad calls: tool errors with rag's messages, and the server keeps serving.
            for name, args, says in [
                ("search", {"query": "x", "stores": ["nothing"]}, "not found"),
                ("search", {"query": "   "}, "empty"),
                ("search", {"query": "x", "max_chars": 0}, "max_chars"),
                ("search", {"query": "x", "mode": "psychic"}, "psychic"),
                ("get", {"store": "garden", "key": "nope.md#0"}, "no chunk with key"),
                ("get", {"store": "garden", "file_path": "../etc/passwd", "line_start": 1}, "'..'"),
                ("get", {"store": "garden", "file_path": "garden/tomatoes.md", "line_start": 900}, "past the end"),
                ("get", {"store": "nothing", "key": "a#0"}, "not found"),
                ("index_status", {"store": "nothing"}, "not found"),
            ]:
                bad = await session.call_tool(name, args)
                check(f"{name} {args} is a tool error", bad.is_error and says in text_of(bad), text_of(bad))
            again = await session.call_tool("search", {"query": "sourdough bread", "k": 2})
            check("still serving after bad calls", not again.is_error and again.structured_content["hits"])


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3:])
