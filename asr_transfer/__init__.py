"""asr-transfer: adapt speech recognisers to new devices, noise and languages."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import io
import re
import sys
from types import ModuleType

__version__ = "0.1.0"

#: Lines that a dependency prints when it is imported and that say nothing a user of this toolkit can
#: act on, by module. ESPnet prints the first on every machine without the optional flash-attn package
#: (its attention falls back to the default, which is what we use anyway); only that exact line is
#: dropped, so a flash-attn that is installed but fails to load still shows its error. g2p_en, which
#: ESPnet's task registry imports for phoneme tokenizers we never use, tries to download NLTK data
#: at import and reports each failure offline.
IMPORT_NOTICES: dict[str, re.Pattern[str]] = {
    "espnet.nets.pytorch_backend.transformer.attention": re.compile(
        r"Failed to import Flash Attention, using ESPnet default: No module named 'flash_attn[.\w]*'"
    ),
    "g2p_en.g2p": re.compile(r"\[nltk_data\] .*"),
}


class _QuietLoader(importlib.abc.Loader):
    """Runs a module's import with stdout and stderr captured, then prints them back without the
    notice lines."""

    def __init__(self, loader: importlib.abc.Loader, notice: re.Pattern[str]) -> None:
        self.loader, self.notice = loader, notice

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
        try:
            self.loader.exec_module(module)  # type: ignore[attr-defined]
        finally:
            captured = sys.stdout.getvalue(), sys.stderr.getvalue()
            sys.stdout, sys.stderr = out, err
            for stream, text in zip((out, err), captured, strict=True):
                lines = text.splitlines(keepends=True)
                stream.write("".join(line for line in lines if not self.notice.fullmatch(line.strip())))

    def __getattr__(self, name: str):  # get_source etc., for tracebacks and inspect
        return getattr(self.loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of :data:`IMPORT_NOTICES` as usual and gives them a :class:`_QuietLoader`."""

    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        notice = IMPORT_NOTICES.get(fullname)
        if notice is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, notice)
        return spec


if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _QuietFinder())
