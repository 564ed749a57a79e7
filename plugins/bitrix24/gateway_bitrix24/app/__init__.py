"""The app inside Bitrix24: pages for a portal's administrator and for every user.

Building blocks, independent of how the gateway wires them: :mod:`.token` (the signed frame
token), :mod:`.texts` (every visible string, per language), :mod:`.views` (the data each page
shows), :mod:`.render` (HTML through Jinja2 with autoescaping), :mod:`.chart` (server-side
SVG), :mod:`.csp` (security headers), :mod:`.forms` (reading the pages' forms) and
:mod:`.assets` (the CSS and JavaScript the gateway serves).
"""
