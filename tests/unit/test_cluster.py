"""cluster/: every manifest parses, has what its kind needs, and its entrypoint's flags are accepted by
jobs/annotate.py's own parser and JobConfig."""

from pathlib import Path

import pytest
import ray
import yaml

from pipelines.driver.schedule import annotate_args
from schemas.job import JobConfig
from tests.jobs import load_job

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((REPO / "cluster").rglob("*.yaml"))


def accepted(args: list[str]) -> JobConfig:
    """Parse as `python jobs/annotate.py ARGS` would, then validate; raises SystemExit or ValidationError."""
    parsed = load_job().build_parser().parse_args(args)
    return JobConfig.model_validate({k: v for k, v in vars(parsed).items() if v is not None})


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "cluster" / name).read_text())


def test_the_expected_manifests_are_there():
    assert {p.name for p in MANIFESTS} >= {"rayjob.yaml", "raycluster.yaml", "gcp-gpu.yaml", "runtime_env.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_parses(path):
    assert isinstance(yaml.safe_load(path.read_text()), dict)


def check_ray_cluster_spec(spec: dict):
    assert spec["rayVersion"] == ray.__version__  # the image's Ray must be the one the job was tested with
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert int(head["rayStartParams"]["object-store-memory"]) > 0
    gpu_groups = [group for group in spec["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c["resources"]["limits"] for c in group["template"]["spec"]["containers"])]
    assert gpu_groups, "no GPU worker group"
    for group in [head] + spec["workerGroupSpecs"]:
        for container in group["template"]["spec"]["containers"]:
            assert container["image"]
    for group in gpu_groups:
        env = {e["name"]: e for c in group["template"]["spec"]["containers"] for e in c.get("env", [])}
        assert "secretKeyRef" in env["HF_TOKEN"]["valueFrom"]  # the token comes from a Secret, never a literal
        assert env["HF_HOME"]["value"]


def test_rayjob():
    job = load("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    check_ray_cluster_spec(spec["rayClusterSpec"])
    assert yaml.safe_load(spec["runtimeEnvYAML"])["working_dir"]
    cfg = accepted(annotate_args(spec["entrypoint"]))
    assert cfg.partition and cfg.since and cfg.until and cfg.summary_uri and cfg.run_id
    gpu_group = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert (cfg.device, cfg.max_actors) == ("cuda", gpu_group["maxReplicas"])
    # the image has vLLM, but the job keeps the default engine until vLLM's answers equal it (docs/performance.md)
    assert cfg.engine == "transformers" and "labeller[vllm]" in (REPO / "cluster" / "rayjob.yaml").read_text()


@pytest.mark.parametrize("name", ["raycluster.yaml", "gcp-gpu.yaml"])
def test_the_documented_commands_ask_for_gpus(name):
    """GPU workers start at zero: only `--device cuda` makes the job ask the autoscaler for them (auto would
    see no GPU and run on the head's CPUs unless the autoscaler reports its node types)."""
    text = (REPO / "cluster" / name).read_text()
    assert "--device cuda --max-actors 4" in text


def test_raycluster():
    cluster = load("raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    check_ray_cluster_spec(cluster["spec"])
    assert cluster["spec"]["rayVersion"] == load("rayjob.yaml")["spec"]["rayClusterSpec"]["rayVersion"]


def test_gcp_cluster_launcher():
    config = load("gcp-gpu.yaml")
    assert config["provider"]["type"] == "gcp" and config["cluster_name"]
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["GPU"] == 0
    gpu = [t for t in types.values() if t["resources"].get("GPU")]
    assert gpu and all(t["node_config"]["guestAccelerators"] for t in gpu)
    assert f"ray[default,data]=={ray.__version__}" in " ".join(config["setup_commands"])
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert "ray stop" in command or "RAY_AUTH_MODE=token" in command


def test_runtime_env():
    runtime_env = load("runtime_env.yaml")
    assert runtime_env["working_dir"] == "."
    assert all(isinstance(v, str) for v in runtime_env["env_vars"].values())
    assert "HF_TOKEN" not in runtime_env["env_vars"]  # stored with the job and shown in the dashboard


def test_the_flag_check_fails_on_a_bad_entrypoint():
    with pytest.raises(SystemExit):
        accepted(annotate_args("python jobs/annotate.py --input x --output y --tasks caption --no-such-flag"))
    with pytest.raises(ValueError, match="not key=value"):
        accepted(annotate_args("python jobs/annotate.py --input x --output y --tasks caption --partition day"))
