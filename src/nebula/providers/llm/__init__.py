"""Language models behind one interface: Ollama through the official `ollama` client, OpenAI
and OpenAI-compatible servers through the official `openai` client."""

from nebula.providers.llm.base import ChatModel, Endpoint, Reply, ToolCall
from nebula.providers.llm.ollama_chat import OllamaModel
from nebula.providers.llm.route import Models, open_model, provider_status

__all__ = [
    "ChatModel",
    "Endpoint",
    "Models",
    "OllamaModel",
    "Reply",
    "ToolCall",
    "open_model",
    "provider_status",
]
