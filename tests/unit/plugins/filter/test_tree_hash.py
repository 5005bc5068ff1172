"""tree_hash: the same build gives the same hash wherever it is; any change to a file, a name or an exec bit
gives another."""
import os
import shutil

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmstack.deploy.plugins.filter.tree_hash import tree_hash


def build(folder):
    os.makedirs(os.path.join(folder, "assets"))
    with open(os.path.join(folder, "index.html"), "w") as f:
        f.write("<html>1</html>")
    with open(os.path.join(folder, "assets", "app.1234abcd.js"), "w") as f:
        f.write("console.log(1)")
    return folder


def test_the_same_files_anywhere_give_the_same_hash(tmp_path):
    one, two = build(str(tmp_path / "one")), build(str(tmp_path / "two"))
    assert tree_hash(one) == tree_hash(two) and len(tree_hash(one)) == 64
    assert tree_hash(one, 16) == tree_hash(one)[:16]


@pytest.mark.parametrize("change", ["content", "name", "exec", "new file"])
def test_any_change_gives_another_hash(tmp_path, change):
    folder = build(str(tmp_path / "site"))
    before = tree_hash(folder)
    index = os.path.join(folder, "index.html")
    if change == "content":
        with open(index, "w") as f:
            f.write("<html>2</html>")
    elif change == "name":
        shutil.move(index, os.path.join(folder, "main.html"))
    elif change == "exec":
        os.chmod(index, 0o755)
    else:
        open(os.path.join(folder, "assets", "extra.css"), "w").close()
    assert tree_hash(folder) != before


def test_a_missing_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(AnsibleFilterError, match="no-such-build.* is not a folder on the controller"):
        tree_hash(str(tmp_path / "no-such-build"))
