"""A report page as a person sees it: opened in Debian's headless Chromium, each figure's box measured."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def probe_page(page: Path) -> Path:
    """A copy of the page whose first script records errors and, once loaded, each figure's box."""
    script = """<script>
    window.__errors = [];
    window.addEventListener('error', function(e){ window.__errors.push(String(e.message)); });
    var original = console.error;
    console.error = function(){ window.__errors.push(Array.from(arguments).join(' ')); original.apply(console, arguments); };
    window.addEventListener('load', function(){ setTimeout(function(){
      var boxes = {};
      document.querySelectorAll('[data-figure]').forEach(function(el){
        var r = el.getBoundingClientRect();
        boxes[el.dataset.figure] = {x: r.x, y: r.y + window.scrollY, w: r.width, h: r.height,
          svg: el.querySelectorAll('svg.main-svg').length, canvas: el.querySelectorAll('canvas').length,
          marks: el.querySelectorAll('path.point, path.js-line, path.js-fill, g.trace, rect').length,
          points: el.querySelectorAll('path.point').length, lines: el.querySelectorAll('path.js-line').length};
      });
      var out = document.createElement('pre'); out.id = 'probe';
      out.textContent = JSON.stringify({errors: window.__errors, boxes: boxes, height: document.body.scrollHeight,
        rows: document.querySelectorAll('#best-trials tbody tr').length});
      document.body.appendChild(out);
    }, 1500); });
    </script>"""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("<head>", "<head>" + script, 1))
    return probed


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("Debian's chromium is not installed (scripts/test.sh installs it)")
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"]
    return subprocess.run(
        [browser, *flags, "--virtual-time-budget=15000", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
