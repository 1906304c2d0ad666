"""MCP, both ways: ``server`` exposes HelixCode's jobs as MCP tools and resources (`helix mcp`);
``client`` lets agent tasks call tools of MCP servers listed under ``[mcp.servers.NAME]``."""
