"""Write .dvc/plots_offline.html: DVC's plot page with vega, vega-lite and vega-embed inlined.

DVC's default page loads those three libraries from a CDN, so `dvc plots show` and `dvc plots diff`
render nothing on a machine without internet. This template has no `{scripts}` placeholder (where DVC
would put the CDN tags) and carries the libraries itself, installed from the npm registry at the
versions pinned in tools/dvc-plots/package-lock.json (`npm ci` in `make setup`).

Run: python tools/make_plots_template.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / "tools" / "dvc-plots" / "node_modules"
LIBRARIES = ("vega/build/vega.min.js", "vega-lite/build/vega-lite.min.js", "vega-embed/build/vega-embed.min.js")
TARGET = ROOT / ".dvc" / "plots_offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>DVC plots (offline)</title>
{libraries}
<style>table {{ border-spacing: 15px; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def main() -> int:
    missing = [lib for lib in LIBRARIES if not (MODULES / lib).is_file()]
    if missing:
        print(f"error: {', '.join(missing)} not found under {MODULES}; run `npm ci` in tools/dvc-plots", file=sys.stderr)
        return 1
    # "</script" inside a library would end the inline tag early; the minified builds have none, checked here.
    sources = [(MODULES / lib).read_text(encoding="utf-8") for lib in LIBRARIES]
    if any("</script" in source.lower() for source in sources):
        print("error: a library contains '</script'; it cannot be inlined", file=sys.stderr)
        return 1
    libraries = "\n".join(f"<script>/* {lib} */\n{source}\n</script>" for lib, source in zip(LIBRARIES, sources, strict=True))
    tmp = TARGET.with_suffix(".tmp")
    tmp.write_text(PAGE.format(libraries=libraries), encoding="utf-8")
    tmp.replace(TARGET)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
