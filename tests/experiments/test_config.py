"""The nested config: presets, dotted overrides, objective switching, and the errors for bad
input (all before any compute)."""
import dataclasses
import json

import pytest

from ebm_jax.experiments.config import (RESUMABLE_FIELDS, Config, ConfigError, RunConfig,
                                        config_differences, config_from_dict, field_names,
                                        resolve_energy_l2, validate)
from ebm_jax.experiments.presets import PRESETS, make_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_named_after_itself(name):
    config = make_config(name)
    assert config.name == name
    assert validate(config) is config


def test_default_preset_is_the_jem_main_job():
    config = make_config()
    objective = config.objective
    assert (config.data.dataset, objective.kind, objective.num_steps, objective.sampler.step_size,
            objective.sampler.noise_scale, objective.chain_start.capacity,
            objective.chain_start.reinit_prob) == ("digits", "jem", 20, 1.0, 0.01, 10_000, 0.05)
    # Config() leaves energy_l2 at none; a preset on shipped data resolves it to 0
    assert resolve_energy_l2(Config()) == config and objective.energy_l2 == 0.0


def test_dotted_overrides_are_parsed_into_the_field_types():
    config = make_config("jem_digits", [
        "run.num_steps=12", "optimizer.learning_rate=3e-4", "model.hidden=16,8",
        "objective.sampler.noise_scale=none", "model.spectral_norm=true",
        "model.activation=elu", "objective.sampler.step_size=0.01"])
    assert config.run.num_steps == 12 and config.optimizer.learning_rate == 3e-4
    assert config.model.hidden == (16, 8) and config.objective.sampler.noise_scale is None
    assert config.model.spectral_norm is True and config.model.activation == "elu"
    assert config.objective.sampler.step_size == 0.01


def test_switching_the_objective_takes_its_defaults_and_later_keys_apply_to_it():
    config = make_config("cd_2d_rings", ["objective=nce", "objective.noise_ratio=4"])
    assert config.objective.kind == "nce" and config.objective.noise_ratio == 4.0
    assert config.objective.noise_scale == 1.25  # NCE's default, not the preset's
    assert config.data.dataset == "rings" and config.model.hidden == (128, 128, 128)
    with pytest.raises(ConfigError, match=r"unknown config key 'objective.noise_ratio'"):
        make_config("cd_2d_rings", ["objective.noise_ratio=4"])  # CD has no noise_ratio


@pytest.mark.parametrize("override, message", [
    (["nonsense=1"], r"unknown config key 'nonsense': expected one of \['data', 'guard', "),
    (["run.nonsense=1"], r"unknown config key 'run.nonsense': expected one of \['run.checkpoint"),
    (["run=1"], r"'run' is a section: expected one of its fields \(run.num_steps"),
    (["run.num_steps.x=1"], r"unknown config key 'run.num_steps.x': 'run.num_steps' is a field"),
    (["data.batch_size=abc"], r"data.batch_size='abc': expected an int"),
    (["data.batch_size=0"], r"data.batch_size=0: expected a positive int"),
    (["objective.sampler.step_size=-1"],
     r"objective.sampler.step_size=-1.0: expected a positive number"),
    (["objective.sampler.step_size=0"],
     r"objective.sampler.step_size=0.0: expected a positive number"),
    (["objective.chain_start.reinit_prob=1.5"],
     r"objective.chain_start.reinit_prob=1.5: expected a probability"),
    (["data.dataset=imagenet"], r"data.dataset='imagenet': expected one of"),
    (["model.spectral_norm=maybe"], r"model.spectral_norm='maybe': expected true or false"),
    (["model.hidden=0,4"], r"model.hidden=\(0, 4\): expected a non-empty list of positive ints"),
    (["run.num_steps"], r"override 'run.num_steps': expected key=value"),
    (["objective=gan"],
     r"objective='gan': expected one of \['cbm', 'cd', "),  # the registered kinds, sorted
    (["objective=softmax", "data.dataset=rings"],
     r"objective='softmax' with data.dataset='rings': expected an objective that needs no "
     r"labels"),
    (["objective=rl", "data.batch_size=100"],
     r"data.batch_size=100 with objective.split_batch=true: expected a multiple of the number "
     r"of noise levels \(6\)"),
    (["objective=cd", "data.label_fraction=0.5"],
     r"data.label_fraction=0.5 with objective='cd'"),
    (["data.label_fraction=0"], r"data.label_fraction=0.0: expected a fraction in \(0, 1\]"),
    (["objective=rl", "model.kind=conv"],
     r"model.kind='conv' with objective='rl': expected one of \['mlp', 'resnet'\]"),
    (["model.kind=igebm_resnet"],
     r"model.kind='igebm_resnet' with objective='jem': expected one of \['mlp', 'conv', 'wrn'"),
    (["objective=cd", "model.kind=resnet"], r"model.kind='resnet' with objective='cd'"),
    (["model.dtype=bfloat16"], r"model.dtype='bfloat16' with model.kind='mlp'"),
    (["objective=rl", "objective.schedule=cosine"],
     r"objective.schedule='cosine': expected one of"),
    (["objective=rl", "objective.data_noise=1.0"],
     r"objective.data_noise=1.0: expected a noise std in \[0, 1\)"),
    (["objective=rl", "objective.num_levels=1"],
     r"objective.num_levels=1: expected an int in \[2, 501\]"),
    (["objective=rl", "data.batch_size=60", "objective.num_levels=10"],
     r"objective.num_levels=10 with objective.schedule='t6': expected 6"),
    (["objective.chain_start.num_shards=3"],
     r"objective.chain_start.capacity=10000 with objective.chain_start.num_shards=3: expected a "
     r"multiple"),
])
def test_bad_overrides_name_the_field_the_value_and_the_expectation(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config("jem_digits", override)


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown preset 'jem_imagenet': expected one of"):
        make_config("jem_imagenet")


def test_wrong_type_in_a_constructed_config():
    with pytest.raises(ConfigError, match=r"run.num_steps=2.5: expected an int"):
        validate(dataclasses.replace(Config(), run=RunConfig(num_steps=2.5)))
    with pytest.raises(ConfigError, match=r"run=3: expected a RunConfig section"):
        validate(dataclasses.replace(Config(), run=3))


def test_round_trip_through_a_dict_and_differences():
    config = make_config("cd_2d_rings", ["run.seed=3"])
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config
    other = make_config("cd_2d_rings", ["run.seed=3", "optimizer.learning_rate=1.0",
                                        "run.num_steps=1"])
    assert config_differences(config, other) == {
        "optimizer.learning_rate": (config.optimizer.learning_rate, 1.0)}
    assert "run.num_steps" in RESUMABLE_FIELDS and "run.seed" not in RESUMABLE_FIELDS
    switched = make_config("cd_2d_rings", ["objective=dsm"])
    assert config_differences(config, switched)["objective.kind"] == ("cd", "dsm")
    with pytest.raises(ConfigError, match=r"unknown config keys \['bogus'\]"):
        config_from_dict({**config.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match=r"unknown config keys \['objective.noise'\]"):
        config_from_dict({**config.to_dict(), "objective": {"kind": "cd", "noise": "uniform"}})


def test_resumable_fields_exist():
    names = set(field_names(Config()))
    assert RESUMABLE_FIELDS <= names, RESUMABLE_FIELDS - names


def test_a_subset_of_sections_takes_the_defaults_for_the_rest():
    config = config_from_dict({"run": {"num_steps": 7}, "objective": {"kind": "cd"}})
    assert config.run.num_steps == 7 and config.run.seed == 0
    assert config.objective.kind == "cd" and config.objective.num_steps == 20
    assert config.data == Config().data
