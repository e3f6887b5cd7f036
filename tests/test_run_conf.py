"""A run's conf cannot point the pipeline at folders outside the configured ones (issue 22).

Anyone allowed to trigger a DAG could set conf `landing` to another folder's feeds (publishing
them into the real home) or `home` to anywhere the worker can write. The resolver the tasks use,
midoffice.orchestration.settings, now refuses both outside MIDOFFICE_LANDING, MIDOFFICE_HOME and
MIDOFFICE_ALLOWED_ROOTS.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture()
def configured(tmp_path, monkeypatch):
    landing, home, extra = tmp_path / "landing", tmp_path / "home", tmp_path / "other-roots"
    for folder in (landing, home, extra / "desk-a"):
        folder.mkdir(parents=True)
    monkeypatch.setenv("MIDOFFICE_LANDING", str(landing))
    monkeypatch.setenv("MIDOFFICE_HOME", str(home))
    monkeypatch.delenv("MIDOFFICE_ALLOWED_ROOTS", raising=False)
    return {"landing": landing, "home": home, "extra": extra, "tmp": tmp_path}


def settings_for(conf: dict):
    from midoffice.orchestration import settings

    return settings({"params": conf})


def test_without_conf_folders_the_configured_ones_are_used(configured):
    s = settings_for({"business_date": "2026-01-05"})
    assert (s.landing, s.home) == (configured["landing"].resolve(), configured["home"].resolve())


@pytest.mark.parametrize("key", ["landing", "home"])
def test_a_conf_folder_outside_the_configured_ones_is_refused(configured, key):
    elsewhere = configured["tmp"] / "attacker"
    elsewhere.mkdir()
    for value in (elsewhere, "/", configured[key] / ".." / "attacker", "/etc"):
        with pytest.raises(ValueError, match=f"conf {key} .* is outside the configured folders.*MIDOFFICE_ALLOWED_ROOTS"):
            settings_for({key: str(value)})


def test_a_symlink_inside_an_allowed_folder_pointing_out_is_refused(configured):
    link = configured["landing"] / "shortcut"
    os.symlink(configured["tmp"], link)
    with pytest.raises(ValueError, match="outside the configured folders"):
        settings_for({"landing": str(link)})


def test_folders_inside_the_configured_ones_or_an_allowed_root_are_accepted(configured, monkeypatch):
    inside = configured["home"] / "rehearsal"
    assert settings_for({"home": str(inside)}).home == inside.resolve()
    desk = configured["extra"] / "desk-a"
    with pytest.raises(ValueError):
        settings_for({"landing": str(desk)})
    monkeypatch.setenv("MIDOFFICE_ALLOWED_ROOTS", os.pathsep.join([str(configured["extra"]), "/nonexistent"]))
    assert settings_for({"landing": str(desk)}).landing == desk.resolve()


def test_a_conf_landing_inside_the_home_is_refused(configured):
    """The home's lake or reports as a landing would publish the pipeline's own files as feeds."""
    lake = configured["home"] / "lake" / "staged"
    lake.mkdir(parents=True)
    with pytest.raises(ValueError, match="conf landing .* is outside the configured folders"):
        settings_for({"landing": str(lake)})
    with pytest.raises(ValueError, match="conf home .* is outside the configured folders"):
        settings_for({"home": str(configured["landing"] / "2026-01-05")})
