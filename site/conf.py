# Sphinx configuration of the course website. `python -m coursekit.site` (or `make site`) stages
# the pages in build/site-src/ and builds them with this file; it sets `project`, `copyright`,
# `html_title` and `html_static_path` (the local MathJax copy) through confoverrides.

project = "Deep Learning Theory"
author = "Course staff"

extensions = ["myst_nb", "sphinx.ext.mathjax"]

# Notebooks are rendered as released: never executed by Sphinx (the stubs would fail).
nb_execution_mode = "off"
nb_merge_streams = True
# Jupyter's markdown: $...$, $$...$$ and bare \begin{align} environments.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True
myst_heading_anchors = 3

exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "alabaster"
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {
    "description": "Graduate course: weekly autograded problem sets",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}

# MathJax 2.7 from the pinned `jupyter-server-mathjax` package, copied into _static/mathjax:
# the site works offline and on any static host, no CDN.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processRefs": False,
        "processEnvironments": False,
        # MyST-NB marks each page tex2jax_ignore; Sphinx's math nodes carry the class "math".
        "processClass": "math|tex2jax_process|mathjax_process",
    },
    # the package ships the STIX-Web fonts only (as Jupyter's classic notebook used them)
    "HTML-CSS": {"availableFonts": [], "webFont": "STIX-Web", "imageFont": None, "preferredFont": None},
    # the same HTML-CSS rendering in every browser (Chromium would otherwise get native MathML)
    "MMLorHTML": {"prefer": "HTML"},
    "messageStyle": "none",
}
