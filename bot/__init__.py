"""The Slack bot: settings, the bolt App, the backend client and the entry point (`tunehouse bot`)."""
