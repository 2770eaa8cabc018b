"""Routes whose static parts contain NGINX metacharacters and unicode."""

from flask import Flask

app = Flask(__name__, static_folder=None)

META = ["/a b", '/q"uote', "/s'q", "/semi;colon", "/br{ace}", "/do$llar", "/ha#sh", "/back\\slash", "/caf\u00e9",
        "/\u4e2d\u6587/<int:n>", "/x y/<name>"]

for i, rule in enumerate(META):
    app.add_url_rule(rule, f"r{i}", (lambda i=i, **kw: f"meta {i}"))
