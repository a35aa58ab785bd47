"""The swarm kind: installations on an `engine: swarm` node run as Docker Swarm services."""
