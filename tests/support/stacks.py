"""The ComfyUI stacks the integration and browser tests run on: a server and the frontend it serves.

Every stack is provided from the package index by :mod:`comfyui_setup` on first use. The server fixtures are
parametrised over these lists, so the README's one test command covers them all; ``MN_STACKS`` (a comma list of
ids, e.g. ``MN_STACKS=2024``) narrows a local run: the stacks it leaves out get no tests (the Manager install
test, which has no stack parameter, is skipped when 0.3.75 is left out).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

try:  # imported as support.stacks or as a top-level module
    from . import comfyui_setup
except ImportError:  # pragma: no cover
    import comfyui_setup  # type: ignore[no-redef]


@dataclass(frozen=True)
class Stack:
    server: str = "2024"  # a key of comfyui_setup.SERVERS
    frontend: str | None = None  # a key of comfyui_setup.FRONTENDS; None: the server's own
    vue: bool = False  # the frontend's Nodes 2.0 mode (setting Comfy.VueNodes.Enabled)

    @property
    def id(self) -> str:
        return self.server + (f"+fe{self.frontend}" if self.frontend else "") + ("-vue" if self.vue else "")

    @property
    def label(self) -> str:
        front = f" + frontend {self.frontend}" if self.frontend else ""
        return f"ComfyUI {self.server}{front}" + (" (Nodes 2.0)" if self.vue else "")

    def source(self) -> Path:
        return comfyui_setup.ensure_comfyui(self.server, quiet=True)

    def python(self) -> str:
        return comfyui_setup.ensure_python(self.server, quiet=True)

    def server_args(self) -> list[str]:
        if not self.frontend:
            return []
        return ["--front-end-root", str(comfyui_setup.ensure_frontend(self.frontend, quiet=True))]

    @property
    def properties_panel(self) -> bool:
        """The frontend has the right-side properties panel (1.32.9 and the 2024 one have none)."""
        return self.frontend == "1.58.1"

    def settings(self) -> dict:
        """Frontend settings for user/default/comfy.settings.json (the 2024 frontend ignores the file)."""
        return {"Comfy.VueNodes.Enabled": True} if self.vue else {}


# The API tests: the 2024 server and today's (with the newest frontend; the API does not depend on it).
API_STACKS = [Stack("2024"), Stack("0.3.75", "1.58.1")]
# The browser tests: each frontend in both node modes (the 2024 frontend has only the classic one).
BROWSER_STACKS = [Stack("2024"),
                  Stack("0.3.75", "1.58.1"), Stack("0.3.75", "1.58.1", vue=True),
                  Stack("0.3.75", "1.32.9"), Stack("0.3.75", "1.32.9", vue=True)]


def selected(stacks: list[Stack]) -> list[Stack]:
    wanted = os.environ.get("MN_STACKS")
    if not wanted:
        return list(stacks)
    ids = {s.strip() for s in wanted.split(",") if s.strip()}
    return [s for s in stacks if s.id in ids]
