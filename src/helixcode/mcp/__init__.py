"""MCP, as a server: ``server`` exposes HelixCode's jobs as MCP tools and resources (`helix mcp`).

The client side, which lets agent tasks call tools of MCP servers listed under ``[mcp.servers.NAME]``,
is one of the agent's tool providers: ``helixcode.agent.mcp_client`` and ``helixcode.agent.mcp_tools``."""
