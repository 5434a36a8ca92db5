/** The agent's defaults, apart from the agent so the CLI can show them without loading it. */
export const DEFAULT_TOKEN_FILE = '/etc/routeshift/token';
export const DEFAULT_LISTEN = '127.0.0.1:7450';
