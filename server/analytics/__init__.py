"""Analytics: statistics over a workspace's conversations and messages."""
