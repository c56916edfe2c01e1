"""llmproxy: one process, one YAML file, every LLM provider behind the APIs your tools already speak."""

__version__ = "0.1.0"
