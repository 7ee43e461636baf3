"""Agents and the OpenAI-compatible client they share."""
