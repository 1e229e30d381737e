"""The agent's inbox: admin reads over conversations and users (SQL next to the tables they
read), the agent's writes (through the conversation actor), and the dashboard statistics."""
