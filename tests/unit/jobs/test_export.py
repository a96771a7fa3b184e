"""jobs/export.py: bad flags fail in one line; a good command writes the export."""

from tests.jobs import load_job


def export_main(argv: list[str]) -> int:
    return load_job("export").main(argv)


def test_the_cli_reports_bad_flags_in_one_line(labelled, tmp_path, capsys):
    dataset, _, _ = labelled
    assert export_main(["--input", str(dataset), "--format", "coco", "--output", str(tmp_path / "a.json"),
                        "--image-url-prefix", "no-equals-sign"]) == 2
    assert "FROM=TO" in capsys.readouterr().err
    assert export_main(["--input", str(tmp_path / "missing"), "--format", "labelstudio",
                        "--output", str(tmp_path / "b.json")]) == 2
    assert export_main(["--input", str(dataset), "--format", "labelstudio", "--output", str(tmp_path / "c.json"),
                        "--tasks", "detect", "--status", "ok", "--min-score", "0.5"]) == 0
    assert "Label Studio tasks" in capsys.readouterr().out


def test_the_label_config_is_written_next_to_the_tasks_and_refused_for_coco(labelled, tmp_path, capsys):
    dataset, _, _ = labelled
    assert export_main(["--input", str(dataset), "--format", "labelstudio", "--output", str(tmp_path / "t.json"),
                        "--label-config", str(tmp_path / "config.xml")]) == 0
    assert (tmp_path / "config.xml").read_text().startswith("<View>")
    assert "labelling config to" in capsys.readouterr().out
    assert export_main(["--input", str(dataset), "--format", "coco", "--output", str(tmp_path / "c.json"),
                        "--label-config", str(tmp_path / "x.xml")]) == 2
    assert "needs --format labelstudio" in capsys.readouterr().err
