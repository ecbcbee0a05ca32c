"""Config presets, overrides and the errors for bad input (all before any compute)."""
import dataclasses

import pytest

from ebm_jax.config import (
    PRESETS,
    RESUMABLE_FIELDS,
    Config,
    ConfigError,
    config_differences,
    config_from_dict,
    make_config,
    validate,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_named_after_itself(name):
    config = make_config(name)
    assert config.name == name
    assert validate(config) is config


def test_default_preset_is_the_jem_main_job():
    config = make_config()
    assert (config.dataset, config.objective, config.sgld_steps, config.sgld_step_size,
            config.sgld_noise, config.buffer_size, config.reinit_prob) == ("digits", "jem", 20, 1.0,
                                                                             0.01, 10_000, 0.05)


def test_overrides_are_parsed_into_the_field_types():
    config = make_config("jem_digits", ["num_steps=12", "learning_rate=3e-4", "hidden=16,8",
                                        "sgld_noise=none", "spectral_norm=true", "activation=elu"])
    assert config.num_steps == 12 and config.learning_rate == 3e-4
    assert config.hidden == (16, 8) and config.sgld_noise is None
    assert config.spectral_norm is True and config.activation == "elu"


@pytest.mark.parametrize("override, message", [
    (["nonsense=1"], r"unknown config key 'nonsense'"),
    (["batch_size=abc"], r"batch_size='abc': expected an int"),
    (["batch_size=0"], r"batch_size=0: expected a positive int"),
    (["sgld_step_size=-1"], r"sgld_step_size=-1.0: expected a positive number"),
    (["sgld_step_size=0"], r"sgld_step_size=0.0: expected a positive number"),
    (["reinit_prob=1.5"], r"reinit_prob=1.5: expected a probability"),
    (["dataset=imagenet"], r"dataset='imagenet': expected one of"),
    (["spectral_norm=maybe"], r"spectral_norm='maybe': expected true or false"),
    (["hidden=0,4"], r"hidden=\(0, 4\): expected a non-empty list of positive ints"),
    (["num_steps"], r"override 'num_steps': expected key=value"),
    (["objective=softmax", "dataset=rings"], r"objective='softmax' with dataset='rings'"),
    (["objective=rl", "batch_size=100"],
     r"batch_size=100 with rl_split_batch=true: expected a multiple of the number of noise "
     r"levels \(6\)"),
    (["objective=cd", "label_fraction=0.5"], r"label_fraction=0.5 with objective='cd'"),
    (["label_fraction=0"], r"label_fraction=0.0: expected a fraction in \(0, 1\]"),
    (["objective=rl", "model=conv"], r"model='conv' with objective='rl': expected 'mlp'"),
    (["objective=rl", "rl_schedule=cosine"], r"rl_schedule='cosine': expected one of"),
    (["objective=rl", "rl_data_noise=1.0"], r"rl_data_noise=1.0: expected a noise std in \[0, 1\)"),
    (["objective=rl", "rl_num_levels=1"], r"rl_num_levels=1: expected an int in \[2, 501\]"),
])
def test_bad_overrides_name_the_field_the_value_and_the_expectation(override, message):
    with pytest.raises(ConfigError, match=message):
        make_config("jem_digits", override)


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"unknown preset 'jem_imagenet': expected one of"):
        make_config("jem_imagenet")


def test_wrong_type_in_a_constructed_config():
    with pytest.raises(ConfigError, match=r"num_steps=2.5: expected an int"):
        validate(dataclasses.replace(Config(), num_steps=2.5))


def test_round_trip_through_a_dict_and_differences():
    config = make_config("cd_2d_rings", ["seed=3"])
    assert config_from_dict(config.to_dict()) == config
    other = dataclasses.replace(config, learning_rate=1.0, num_steps=1)
    assert config_differences(config, other) == {"learning_rate": (config.learning_rate, 1.0)}
    assert "num_steps" in RESUMABLE_FIELDS
    with pytest.raises(ConfigError, match=r"unknown config keys \['bogus'\]"):
        config_from_dict({**config.to_dict(), "bogus": 1})
