"""Sphinx configuration of the course's website (built by tools/build_site.py, never by hand).

tools/build_site.py copies this folder into a temporary source folder, adds the pages it generates
(home, chapters, glossary, guides) and runs sphinx-build there. The notebooks are rendered with the
outputs stored in them: nothing is executed. Nothing on a page comes from outside the site: MathJax is
served from the site itself (sphinx-mathjax-offline ships MathJax 3), the theme's fonts and scripts
are its own files, and no widget JavaScript is loaded (a widget shows its stored picture).
"""

project = "From gradient descent to large models"
html_title = project
author = "the course's authors"
language = "en"
# text exactly as written: the home page's tables are README's, character for character
smartquotes = False

extensions = [
    "myst_nb",                  # notebooks and MyST markdown pages (it loads myst_parser)
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",   # MathJax 3.2.2 copied into _static/mathjax; mathjax_path points there
]

# the stored outputs, never a kernel
nb_execution_mode = "off"
nb_merge_streams = True
# ipywidgets' embedding scripts come from a CDN: never load them (the build also drops widget views)
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
# MathJax's TeX packages beyond its defaults that the notebooks use (psmallmatrix: mathtools), loaded
# from the site's own copy
mathjax3_config = {"loader": {"load": ["[tex]/mathtools"]}, "tex": {"packages": {"[+]": ["mathtools"]}}}

exclude_patterns = ["_extra", "_build", "**.ipynb_checkpoints"]
html_extra_path = ["_extra"]    # the notebooks themselves, downloadable: notebooks/, student/
html_static_path = ["_static"]
html_css_files = ["course.css"]
templates_path = []

html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": False,     # the site's title above the menu leads home
    "show_toc_level": 2,
    "use_download_button": False,   # it would offer the build's copy; each chapter links the real files
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
    "navbar_persistent": [],         # one search field, in the sidebar (not a second one in a top bar)
}
# a fresh browser has no stored light/dark choice: start light (without it the theme logs a console error)
html_context = {"default_mode": "light"}
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
