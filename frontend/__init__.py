"""The dashboard's static files: plain HTML, CSS and JavaScript modules, one file per panel.

The server serves them as they are (``GET /`` gives ``index.html``, ``/static`` the rest; see
``server/app/factory.py``); there is no build step and no framework. ``sse-batcher.js`` is the
browser's client for the stream, and ``vendor/`` holds the one vendored library (uPlot) with its
licence. This ``__init__`` only makes the folder a package, so the files install with the wheel and
the server finds them next to it.
"""
