"""The Edge Agent: run YAML-defined agents, with an optional local LLM through llama-cpp-python.

Deliberately empty of imports so that `tea --version` loads nothing heavy.
"""
