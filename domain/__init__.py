"""Pure rules every process shares: Markdown rendering (`markdown`) and what a handle, a tag and a post body may be
(`text`). No I/O here; event schemas, the gateway and the consumers import these."""
