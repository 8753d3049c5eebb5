"""mkdocs hooks: the dataset cards (datasets/*/README.md) and bench/README.md become pages of the site, and the
guide's links to them (written for reading on a code host: ../datasets/NAME/README.md) point at those pages."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

_CARD_LINK = re.compile(r"\]\(\.\./datasets/([\w-]+)/README\.md")
_BENCH_LINK = re.compile(r"\]\(\.\./bench/README\.md")


def on_files(files: Files, config) -> Files:
    root = Path(config.config_file_path).parent
    for card in sorted((root / "datasets").glob("*/README.md")):
        text = card.read_text(encoding="utf-8")
        text = text.replace("](../../docs/", "](../")  # a card's link into the guide
        text = re.sub(r"\]\(\.\./([\w-]+)/README\.md", r"](\1.md", text)  # a card's link to another card
        files.append(File.generated(config, f"datasets/{card.parent.name}.md", content=text))
    files.append(File.generated(config, "bench.md", content=(root / "bench" / "README.md").read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = _CARD_LINK.sub(r"](datasets/\1.md", markdown)
    return _BENCH_LINK.sub("](bench.md", markdown)
