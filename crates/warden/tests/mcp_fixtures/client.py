"""The `mcp` SDK's client through Warden, one step per run, printing one JSON line.

python3 client.py URL TOKEN NODE list
python3 client.py URL TOKEN NODE call TOOL ARGS_JSON [wait|resume]
"""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.exceptions import McpError


async def main():
    url, token, node, cmd = sys.argv[1:5]
    headers = {"Authorization": f"Bearer {token}", "x-warden-node": node}
    if cmd == "call" and len(sys.argv) > 7:
        headers["x-warden-approval"] = sys.argv[7]
    async with streamablehttp_client(url, headers=headers, timeout=60, sse_read_timeout=120) as (r, w, _):
        async with ClientSession(r, w) as s:
            await s.initialize()
            if cmd == "list":
                tools = await s.list_tools()
                out = {"tools": sorted(t.name for t in tools.tools), "descriptions": {t.name: t.description for t in tools.tools}}
            else:
                try:
                    res = await s.call_tool(sys.argv[5], json.loads(sys.argv[6]))
                    out = {"ok": True, "result": res.model_dump(mode="json", by_alias=True)}
                except McpError as e:
                    out = {"ok": False, "code": e.error.code, "message": e.error.message, "data": e.error.data}
    print(json.dumps(out), flush=True)


asyncio.run(main())
