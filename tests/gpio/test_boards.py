"""Board tables (boards/*/board.toml through niche.gpio.Board): pins to GPIO
banks, lines, legacy sysfs numbers and LEDs, checked against references that
do not come from the tables themselves (PLATFORM.md and the boards' manuals).
No port and no kernel: pure table lookups."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from niche.gpio import Board, LineRef, UnknownPin
from niche.gpio.errors import GpioError

pytestmark = pytest.mark.timeout(30)

# BeagleBone Black P8/P9 GPIO pins: (bank, line), from the BBB System
# Reference Manual's expansion header tables (gpioB_L, sysfs = 32 * B + L).
BBB = {
    "P8_3": (1, 6),
    "P8_4": (1, 7),
    "P8_5": (1, 2),
    "P8_6": (1, 3),
    "P8_7": (2, 2),
    "P8_8": (2, 3),
    "P8_9": (2, 5),
    "P8_10": (2, 4),
    "P8_11": (1, 13),
    "P8_12": (1, 12),
    "P8_13": (0, 23),
    "P8_14": (0, 26),
    "P8_15": (1, 15),
    "P8_16": (1, 14),
    "P8_17": (0, 27),
    "P8_18": (2, 1),
    "P8_19": (0, 22),
    "P8_20": (1, 31),
    "P8_21": (1, 30),
    "P8_22": (1, 5),
    "P8_23": (1, 4),
    "P8_24": (1, 1),
    "P8_25": (1, 0),
    "P8_26": (1, 29),
    "P8_27": (2, 22),
    "P8_28": (2, 24),
    "P8_29": (2, 23),
    "P8_30": (2, 25),
    "P8_31": (0, 10),
    "P8_32": (0, 11),
    "P8_33": (0, 9),
    "P8_34": (2, 17),
    "P8_35": (0, 8),
    "P8_36": (2, 16),
    "P8_37": (2, 14),
    "P8_38": (2, 15),
    "P8_39": (2, 12),
    "P8_40": (2, 13),
    "P8_41": (2, 10),
    "P8_42": (2, 11),
    "P8_43": (2, 8),
    "P8_44": (2, 9),
    "P8_45": (2, 6),
    "P8_46": (2, 7),
    "P9_11": (0, 30),
    "P9_12": (1, 28),
    "P9_13": (0, 31),
    "P9_14": (1, 18),
    "P9_15": (1, 16),
    "P9_16": (1, 19),
    "P9_17": (0, 5),
    "P9_18": (0, 4),
    "P9_19": (0, 13),
    "P9_20": (0, 12),
    "P9_21": (0, 3),
    "P9_22": (0, 2),
    "P9_23": (1, 17),
    "P9_24": (0, 15),
    "P9_25": (3, 21),
    "P9_26": (0, 14),
    "P9_27": (3, 19),
    "P9_28": (3, 17),
    "P9_29": (3, 15),
    "P9_30": (3, 16),
    "P9_31": (3, 14),
    "P9_41": (0, 20),
    "P9_42": (0, 7),
}

# Raspberry Pi 40-pin header: physical pin -> BCM GPIO (pinout.xyz).
RPI = {
    3: 2,
    5: 3,
    7: 4,
    8: 14,
    10: 15,
    11: 17,
    12: 18,
    13: 27,
    15: 22,
    16: 23,
    18: 24,
    19: 10,
    21: 9,
    22: 25,
    23: 11,
    24: 8,
    26: 7,
    27: 0,
    28: 1,
    29: 5,
    31: 6,
    32: 12,
    33: 13,
    35: 19,
    36: 16,
    37: 26,
    38: 20,
    40: 21,
}


@pytest.fixture(scope="module")
def bbb() -> Board:
    return Board.load("beaglebone")


@pytest.fixture(scope="module")
def rpi() -> Board:
    return Board.load("rpi")


@pytest.fixture(scope="module")
def sim() -> Board:
    return Board.load("sim")


# -- BeagleBone Black ----------------------------------------------------------


@pytest.mark.parametrize(
    "pin,bank,line,sysfs",
    [
        ("P9_12", 1, 28, 60),  # PLATFORM.md: P9_12 = gpio1_28 = sysfs 60
        ("P8_12", 1, 12, 44),
        ("P9_15", 1, 16, 48),
        ("P9_42", 0, 7, 7),
    ],
)
def test_beaglebone_platform_pins(bbb: Board, pin: str, bank: int, line: int, sysfs: int) -> None:
    ref = bbb.resolve(pin)
    assert ref.offset == line
    assert ref.sysfs == sysfs
    assert ref.chips == tuple(bbb.banks[bank])
    # mainline labels the bank "gpio-<32B>-<32B+31>"; the chip is found by label, not number
    assert f"gpio-{32 * bank}-{32 * bank + 31}" in ref.chips
    assert not ref.leds


@pytest.mark.parametrize("n", range(4))
def test_beaglebone_user_leds(bbb: Board, n: int) -> None:
    ref = bbb.resolve(f"USR{n}")
    assert ref.leds == (f"beaglebone:green:usr{n}",)
    assert ref.offset == 21 + n and ref.chips == tuple(bbb.banks[1])  # gpio1_21..24
    assert ref.sysfs == 32 + 21 + n


def test_beaglebone_every_header_pin(bbb: Board) -> None:
    assert set(bbb.pins) == set(BBB), set(bbb.pins) ^ set(BBB)
    for pin, (bank, line) in BBB.items():
        ref = bbb.resolve(pin)
        assert (ref.offset, ref.sysfs, ref.chips) == (line, 32 * bank + line, tuple(bbb.banks[bank])), pin


def test_beaglebone_sysfs_is_32_bank_plus_line(bbb: Board) -> None:
    for name, d in [*bbb.pins.items(), *bbb.leds.items()]:
        assert d["sysfs"] == 32 * d["bank"] + d["line"], name
        assert 0 <= d["line"] < 32 and d["bank"] in bbb.banks, name


def test_beaglebone_banks(bbb: Board) -> None:
    assert sorted(bbb.banks) == [0, 1, 2, 3]
    labels = [lab for b in bbb.banks.values() for lab in b]
    assert len(labels) == len(set(labels)), "a chip label stands for two banks"
    assert bbb.backend == "chardev"
    assert "overlay" in bbb.overlay_hint


# -- Raspberry Pi --------------------------------------------------------------


def test_rpi_pin11_is_gpio17(rpi: Board) -> None:
    ref = rpi.resolve("PIN11")
    assert ref.line_name == "GPIO17"
    assert ref.sysfs_offset == 17 and ref.sysfs is None  # base + 17: the base moved to 512 in 6.6
    assert ref.offset is None  # found by line name: gpiochip0 on Pi 0-4, another chip on a Pi 5


def test_rpi_header(rpi: Board) -> None:
    assert set(rpi.pins) == {f"PIN{p}" for p in RPI}
    for pin, bcm in RPI.items():
        ref = rpi.resolve(f"PIN{pin}")
        assert (ref.line_name, ref.sysfs_offset) == (f"GPIO{bcm}", bcm), pin


def test_rpi_line_names_resolve_to_themselves(rpi: Board) -> None:
    ref = rpi.resolve("GPIO17")
    assert ref == LineRef("GPIO17", line_name="GPIO17")
    assert rpi.resolve("gpio4").line_name == "GPIO4"  # kernel names are upper case


def test_rpi_leds(rpi: Board) -> None:
    assert rpi.resolve("ACT").leds == ("ACT", "led0")  # new and old kernels' names
    assert rpi.resolve("PWR").leds == ("PWR", "led1")
    assert "pinctrl-bcm2835" in rpi.sysfs_chips


# -- the simulator -------------------------------------------------------------


def test_sim_has_sim0_to_sim31(sim: Board) -> None:
    assert set(sim.pins) == {f"SIM{n}" for n in range(32)}
    assert sim.backend == "sysfs"
    for n in range(32):
        assert sim.resolve(f"SIM{n}").sysfs == n
    with pytest.raises(UnknownPin):
        sim.resolve("SIM32")
    with pytest.raises(UnknownPin):  # no kernel line names on the sim board
        sim.resolve("GPIO3")


# -- every board ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["beaglebone", "rpi", "sim"])
def test_names_unique(name: str) -> None:
    b = Board.load(name)
    assert b.name == name and b.model
    upper = [n.upper() for n in [*b.pins, *b.leds]]
    assert len(upper) == len(set(upper)), "a name is both a pin and an LED (or differs only in case)"
    names = b.names()
    assert len(names) == len(set(names)) == len(b.pins) + len(b.leds)
    # and no two pins are the same line
    where = [
        (d.get("bank"), d.get("line"), d.get("bcm"), d.get("name"), d.get("sysfs")) for d in b.pins.values()
    ]
    assert len(where) == len(set(where))
    sysfs = [d["sysfs"] for d in b.pins.values() if "sysfs" in d]
    assert len(sysfs) == len(set(sysfs))
    bcm = [d["bcm"] for d in b.pins.values() if "bcm" in d]
    assert len(bcm) == len(set(bcm))


def test_names_in_natural_order(bbb: Board, sim: Board) -> None:
    names = bbb.names()
    assert names.index("P8_3") < names.index("P8_10") < names.index("P8_46") < names.index("P9_11")
    assert sim.names() == [f"SIM{n}" for n in range(32)]


def test_resolve_is_case_insensitive(bbb: Board) -> None:
    assert bbb.resolve("p9_12").sysfs == 60
    assert bbb.resolve("usr0").leds == ("beaglebone:green:usr0",)


def test_unknown_pin_lists_valid_names(bbb: Board) -> None:
    with pytest.raises(UnknownPin) as ei:
        bbb.resolve("P9_99")
    msg = str(ei.value)
    assert "P9_99" in msg and "beaglebone" in msg
    for n in ("P8_3", "P9_12", "P9_42", "USR0", "USR3"):
        assert re.search(rf"\b{n}\b", msg), n
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, GpioError)
    assert not msg.startswith("'"), "UnknownPin should not be quoted like a KeyError"


def test_unknown_board_lists_known_boards() -> None:
    with pytest.raises(UnknownPin) as ei:
        Board.load("beaglebone-ai-64")
    msg = str(ei.value)
    for n in ("beaglebone", "rpi", "sim"):
        assert n in msg


def test_generic_specs(bbb: Board) -> None:
    for b in (bbb, Board("generic")):
        assert b.resolve("gpiochip0:17") == LineRef("gpiochip0:17", chips=("gpiochip0",), offset=17)
        assert b.resolve("niche-sim:3") == LineRef("niche-sim:3", chips=("niche-sim",), offset=3)
        assert b.resolve("sysfs:60") == LineRef("sysfs:60", sysfs=60)
        assert b.resolve("led:beaglebone:green:usr0").leds == ("beaglebone:green:usr0",)
    assert Board("generic").resolve("GPIO17").line_name == "GPIO17"
    with pytest.raises(UnknownPin):
        Board("generic").resolve("P9_12")


@pytest.mark.parametrize("bad", [None, 17, b"P9_12", ""])
def test_pin_must_be_a_string(bbb: Board, bad: object) -> None:
    with pytest.raises(TypeError):
        bbb.resolve(bad)  # type: ignore[arg-type]


def test_load_from_path(tmp_path: Path) -> None:
    p = tmp_path / "myboard.toml"
    p.write_text('name = "mine"\nbackend = "sysfs"\n[pins]\nLED = { sysfs = 5 }\n')
    b = Board.load(str(p))
    assert (b.name, b.backend, b.resolve("LED").sysfs) == ("mine", "sysfs", 5)
