"""Language models behind one interface: Ollama through the official `ollama` client, OpenAI and OpenAI-compatible servers through the official `openai` client."""
