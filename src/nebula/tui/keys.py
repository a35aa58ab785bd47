"""The line of keys at the bottom of every screen."""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static


class KeyBar(Static):
    """The keys the focused widget and its screen answer, as one line of text redrawn when
    they change. Textual's `Footer` recomposes a widget per key instead, which cost most of
    the time from a key press to the next panel drawn (the focus, and so the keys, change with
    each panel)."""

    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; background: $footer-background; color: $footer-foreground; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.keys_changed)
        self.keys_changed(self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def keys_changed(self, screen: Screen[object]) -> None:
        colour = self.app.get_css_variables().get("footer-key-foreground", "")
        text, seen = Text(no_wrap=True, overflow="ellipsis"), set()
        for _, binding, enabled, _ in screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            text.append(f" {self.app.get_key_display(binding)} ", f"bold {colour}")
            text.append(f"{binding.description} ", "" if enabled else "dim")
        self.update(text)
