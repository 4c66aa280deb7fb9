"""The sweep report: grouping by configuration across seeds, mean ± std, absent splits."""

from __future__ import annotations

import json

import pytest
import yaml

from ecl_lightning.report import config_label, load_runs, main, summarize, to_markdown


def write_job(root, num, overrides, metrics):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "metrics.json").write_text(json.dumps(metrics))


def test_groups_seeds_and_computes_mean_std(tmp_path):
    write_job(tmp_path, 0, ["model=ecl", "seed=0", "trainer.max_epochs=9"], {"test/acc": 0.80, "test/acc_few": 0.5})
    write_job(tmp_path, 1, ["model=ecl", "seed=1", "trainer.max_epochs=9"], {"test/acc": 0.84, "test/acc_few": 0.7})
    write_job(tmp_path, 2, ["model=ce", "seed=0", "trainer.max_epochs=9"], {"test/acc": 0.70, "test/nll": 0.88})
    (tmp_path / "3").mkdir()  # a job that did not finish: skipped
    rows = summarize(load_runs(tmp_path), columns=("test/acc", "test/acc_few"))
    assert [r["config"] for r in rows] == ["model=ecl", "model=ce"]
    mean, std = rows[0]["test/acc"]
    assert mean == pytest.approx(0.82) and std == pytest.approx(0.028284271, rel=1e-6)
    assert rows[1]["test/acc"] == (pytest.approx(0.70), None) and rows[1]["test/acc_few"] is None
    table = to_markdown(rows, columns=("test/acc", "test/acc_few"))
    assert "| model=ecl | 2 | 82.00 ± 2.83 | 60.00 ± 14.14 |" in table
    assert "| model=ce | 1 | 70.00 | - |" in table
    nll_rows = summarize(load_runs(tmp_path), columns=("test/nll",))
    assert "| model=ce | 1 | 0.88 |" in to_markdown(nll_rows, columns=("test/nll",))  # NLL is not a percentage


def test_label_ignores_seed_and_paths():
    assert config_label(["seed=3", "data.data_dir=/x", "model.loss.reweight=none"]) == "model.loss.reweight=none"
    assert config_label(["seed=3"]) == "(defaults)"
    # Evaluations of several seeds' checkpoints: one configuration, named by run_name.
    assert (
        config_label(["ckpt_path=/r/1/e.ckpt", "run_name=ecl", "protocol=shifted"]) == "run_name=ecl protocol=shifted"
    )
    assert config_label(["model=ce", "debug=fdr"], common=frozenset({"debug=fdr"})) == "model=ce"


def test_cli_writes_file_and_errors_on_empty_dir(tmp_path, capsys):
    write_job(tmp_path / "sweep", 0, ["model=ecl"], {"test/acc": 0.5})
    out = tmp_path / "table.md"
    main([str(tmp_path / "sweep"), "--columns", "test/acc", "--output", str(out)])
    assert "| model=ecl | 1 | 50.00 |" in out.read_text()
    with pytest.raises(SystemExit) as stop:  # a user error: one line on stderr and exit code 2, as every entry point
        main([str(tmp_path / "nothing")])
    assert stop.value.code == 2
    assert (
        capsys.readouterr().err
        == f"Error: no */metrics.json under {tmp_path / 'nothing'}: is it a finished multirun directory?\n"
    )
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        load_runs(tmp_path / "nothing")


def test_cli_joins_several_sweep_dirs_into_one_table(tmp_path, capsys):
    # One sweep split across two multiruns (both number their jobs from 0): seeds of one config are pooled.
    write_job(tmp_path / "a", 0, ["variant=full", "seed=0", "ablation=x"], {"test/acc": 0.80})
    write_job(tmp_path / "a", 1, ["variant=full", "seed=1", "ablation=x"], {"test/acc": 0.84})
    write_job(tmp_path / "b", 0, ["variant=no_feat", "seed=0", "ablation=x"], {"test/acc": 0.70})
    write_job(tmp_path / "b", 1, ["variant=full", "seed=2", "ablation=x"], {"test/acc": 0.82})
    table = main([str(tmp_path / "a"), str(tmp_path / "b"), "--columns", "test/acc"])
    assert "| variant=full | 3 | 82.00 ± 2.00 |" in table
    assert "| variant=no_feat | 1 | 70.00 |" in table
    with pytest.raises(SystemExit):  # a wrong second directory is named, not skipped
        main([str(tmp_path / "a"), str(tmp_path / "typo")])
    assert "typo" in capsys.readouterr().err
