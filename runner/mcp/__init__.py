"""What only the MCP door needs: tool texts (`text`) and MCP tasks over async runs (`tasks`)."""
