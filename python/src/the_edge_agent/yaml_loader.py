"""Load agent YAML keeping the line:column of every mapping and key, so errors point into the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import AgentError


class Located(dict):
    """A mapping that remembers where it and each of its keys start in the source (1-based)."""

    mark: tuple[int, int] = (0, 0)
    key_marks: dict[str, tuple[int, int]]

    def where(self, key: str | None = None) -> tuple[int, int]:
        """Position of `key` if it is present, else of the mapping itself."""
        return getattr(self, "key_marks", {}).get(key, self.mark)


def _position(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings are `Located` and which rejects duplicate keys."""

    def construct_located(self, node: yaml.MappingNode) -> Located:
        self.flatten_mapping(node)
        mapping, marks = Located(), {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in mapping:
                line, column = _position(key_node)
                raise AgentError(f"{self.name}:{line}:{column}: duplicate key '{key}'")
            mapping[key] = self.construct_object(value_node, deep=True)
            marks[key] = _position(key_node)
        mapping.mark, mapping.key_marks = _position(node), marks
        return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_located)


def load_yaml_file(path: Path) -> Located:
    """Parse `path`; a missing file, a syntax error or a non-mapping document is one-line AgentError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentError(f"{path}: no such agent file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AgentError(f"{path}: cannot read agent file: {error}") from None
    loader = _Loader(text)
    loader.name = str(path)
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        raise AgentError(_syntax_message(path, error)) from None
    except yaml.YAMLError as error:
        raise AgentError(f"{path}: invalid YAML: {error}") from None
    finally:
        loader.dispose()
    if not isinstance(document, Located):
        raise AgentError(f"{path}:1:1: an agent must be a YAML mapping (name, nodes, edges, ...)")
    return document


def _syntax_message(path: Path, error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = " ".join(part for part in (error.context, error.problem) if part)
    return f"{where}: invalid YAML: {problem}"
