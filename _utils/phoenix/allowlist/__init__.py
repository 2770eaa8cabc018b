"""The NGINX allowlist: serve exactly a Flask app's routes, answer 404 to everything else.

Data flows one way (see DESIGN.md section 1)::

    app spec --extract--> route table --compile--> patterns --render--> include text
    nginx config --inspect--> where the app is reached
    include text --validate (nginx -t on a mirror)--> atomic swap (previous kept) --> optional probe
"""
