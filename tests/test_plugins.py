"""Third-party plugins found through the `autotransfer` entry-point group, like the built-ins."""

import sys
import textwrap

import pytest

import autotransfer
from autotransfer import plugins
from autotransfer.cli import main
from autotransfer.errors import PluginError

PLUGIN_SOURCE = '''
import numpy as np
import autotransfer


class MeanNorm:
    """Mean L2 norm of the features: a (silly) third-party estimator."""

    name = "mean_norm"
    needs_logits = False
    needs_features = True

    def score(self, inputs):
        return float(np.linalg.norm(inputs.features, axis=1).mean())


@autotransfer.hookimpl
def autotransfer_register_estimators():
    return [MeanNorm()]
'''


def _install_dist(root, module, dist, source):
    """Lay out a module and its .dist-info (what `pip install` writes) on a path entry."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[autotransfer]\n{module} = {module}\n")


@pytest.fixture
def third_party(tmp_path):
    _install_dist(tmp_path, "at_meannorm_plugin", "at-meannorm-plugin", PLUGIN_SOURCE)
    sys.path.insert(0, str(tmp_path))
    plugins.reset_plugin_manager()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("at_meannorm_plugin", None)
    plugins.reset_plugin_manager()


def test_builtins_register_through_the_entry_point_group():
    infos = {i.name: i for i in plugins.plugin_infos()}
    for name in (
        "builtin_backbones",
        "builtin_weight_sources",
        "builtin_estimators",
        "builtin_descriptors",
    ):
        assert infos[name].distribution == "autotransfer"
    est = plugins.registered("estimators")["logme"]
    assert est.plugin == "builtin_estimators" and est.distribution == "autotransfer"


def test_entry_point_plugin_is_discovered_and_used_by_rank(
    third_party, image_folder, tiny_backbones
):
    reg = plugins.registered("estimators")["mean_norm"]
    assert reg.plugin == "at_meannorm_plugin" and reg.distribution == "at-meannorm-plugin"
    r = autotransfer.rank(
        image_folder,
        backbones=tiny_backbones,
        estimators=["mean_norm", "logme"],
        extraction=autotransfer.ExtractionSettings(resolution=48, num_workers=0),
    )
    assert r.estimators == ("mean_norm", "logme")
    assert all(row.scores["mean_norm"] > 0 for row in r.rows)


def test_plugins_command_names_the_distribution(third_party, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "at-meannorm-plugin" in out and "mean_norm" in out and "builtin_estimators" in out


class _Broken:
    @autotransfer.hookimpl
    def autotransfer_register_estimators(self):
        raise RuntimeError("boom")


class _Duplicate:
    @autotransfer.hookimpl
    def autotransfer_register_estimators(self):
        class LogME:
            name = "logme"
            needs_logits = False
            needs_features = True

            def score(self, inputs):
                return 0.0

        return [LogME()]


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            _Broken(),
            r"Plugin 'broken' failed in autotransfer_register_estimators: RuntimeError: boom",
        ),
        (
            _Duplicate(),
            r"'logme' is registered twice: by plugin 'builtin_estimators' and by "
            r"plugin 'broken'",
        ),
    ],
)
def test_plugin_errors_name_the_plugin(plugin, message):
    plugins.register_plugin(plugin, name="broken")
    try:
        with pytest.raises(PluginError, match=message):
            plugins.registered("estimators")
    finally:
        plugins.reset_plugin_manager()


def test_every_hook_is_documented():
    from autotransfer import hookspecs

    for name in plugins.KINDS.values():
        doc = getattr(hookspecs, name).__doc__
        assert doc and len(doc.split()) > 10, name


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="Did you mean 'logme'"):
        plugins.lookup("estimators", "logm")
