"""A build folder of the lab frontend (tests/images/frontend/site), as a frontend's `npm run build` would leave one
on the controller, with its version filled in."""
import os
import shutil

SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "tests", "images", "frontend", "site")


def build(folder, version):
    """folder (replaced) holds the site with @VERSION@ set to version in every page."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(SITE, folder)
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.endswith(".html"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read().replace("@VERSION@", version)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    return folder
