"""Which recordings the real-music check set uses, their style, and the licence of each.

Every recording is a file inside a Debian package (bookworm, main): game soundtracks that
people composed, played and produced. A path may reach into an archive inside the package
with ``!`` (``usr/.../music.pk3!sound/cdtracks/x.ogg``): games ship some music zipped.

The style is what a listener would call the music, and ``why`` says what that rests on:
the file's own tags (genre, album), its title, the game's credits or how the game uses it
(0 A.D. plays its Celtic tracks for the Celtic civilisations). Nothing here is labelled
just by package; packages with mixed styles (OpenClonk, naev, Widelands) give a few files
to different styles and keep the rest out.

Where tags leave "ambient" against "electronic" open, one listening proxy decides: the
*percussive share*, the fraction of spectrogram energy that librosa's harmonic/percussive
separation puts in the percussive part (1024-point STFT at 16 kHz, averaged over a track's
10-second clips). Ambient here means music without a beat: below about 0.3, where the
techno tracks sit at 0.3-0.6. A track that a tag calls one style and the proxy the other
stays out rather than muddy either class.

A licence is never taken on trust: ``build.py`` finds each ``Licence.anchor`` in the
package's copyright file (or the named file inside the package), checks that the
paragraph around it contains ``proof``, and quotes that paragraph in ``LICENSES.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

STYLES = ("orchestral", "metal", "electronic", "ambient", "folk")

# Recording ids end up in file names ``<style>/<rec>__<nnn>.flac`` and are what a grouped
# split keys on, so they must never contain the ``__`` separator (or anything a shell or a
# regex would trip over).
REC_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Licence:
    """Where a package's copyright file states the licence of some of its files."""

    name: str  # short name, DEP-5 style where the file uses one
    anchor: str  # a string that locates the paragraph
    proof: str  # a string that paragraph must contain for the licence to hold
    file: str = ""  # path inside the package; empty: usr/share/doc/<package>/copyright
    per_file: bool = False  # the paragraph lists files: it must name every recording's file
    paragraphs: int = 1  # how many paragraphs (blank-line separated) from the anchor's on to quote


@dataclass(frozen=True)
class Recording:
    """One source recording and the style it is labelled with."""

    style: str
    rec: str
    path: str  # inside the package; ``outer!inner`` reaches into a zip
    licence: str  # a Licence.name of the package
    why: str
    stems: tuple[str, ...] = ()  # further files mixed into ``path`` (multitrack releases)


@dataclass(frozen=True)
class Package:
    """A Debian package and the recordings taken from it."""

    name: str
    credit: str  # who made the music, for attribution
    licences: tuple[Licence, ...]
    recordings: tuple[Recording, ...] = field(default_factory=tuple)


def _files(style: str, prefix: str, licence: str, why: str, names: dict[str, str]) -> tuple[Recording, ...]:
    """Recordings ``prefix + file`` for each ``rec: file`` in ``names``."""
    return tuple(Recording(style, rec, prefix + name, licence, why) for rec, name in names.items())


def _frets_on_fire(prefix: str, rec_prefix: str, licence: str, why: str, songs: list[str]) -> tuple:
    """Frets on Fire songs: the backing track ``song.ogg`` with the lead guitar stem mixed back in."""
    return tuple(
        Recording(
            "metal",
            f"{rec_prefix}-{re.sub(r'[^a-z0-9]+', '-', song.lower()).strip('-')}",
            f"{prefix}{song}/song.ogg",
            licence,
            why,
            stems=(f"{prefix}{song}/guitar.ogg",),
        )
        for song in songs
    )


WESNOTH = "usr/share/games/wesnoth/1.16/data/core/music/"
OPENCLONK = "usr/share/games/openclonk/Music.ocg/"
NAEV = "usr/share/naev/dat/snd/music/"
NEXUIZ = "usr/share/games/nexuiz/data/music.pk3!sound/cdtracks/"
ZERO_AD = "usr/share/games/0ad/mods/public/public.zip!audio/music/"
WIDELANDS = "usr/share/games/widelands/data/music/"
MARS = "usr/share/games/marsshooter/audio/"

PACKAGES: tuple[Package, ...] = (
    Package(
        "wesnoth-1.16-music",
        "The Battle for Wesnoth composers (Doug Kaufman, Mattias Westlund, Aleksi Aubry-Carlson, "
        "Tyler Johnson, Ryan Reilly, Jeremy Nicoll, Gianmarco Leone, Timothy Pinkham, Stephen Rozanc, "
        "Joseph G. Toscano)",
        (
            Licence(
                "GPL-2+",
                anchor="Copyright (C) 2003 - 2007 by David White",
                proof="GNU General Public License version 2 or at your option any later version",
                paragraphs=2,  # "License:" with the copyright line, then the GPL notice
            ),
        ),
        # Every track tagged genre "Romantic Classical" and at least a minute long, except
        # Traveling Minstrels (a folk-like minstrel tune) and the untagged old Frantic.
        _files(
            "orchestral",
            WESNOTH,
            "GPL-2+",
            "Vorbis tag genre=Romantic Classical (The Battle for Wesnoth OST); orchestral score",
            {
                "wesnoth-battle-epic": "battle-epic.ogg",
                "wesnoth-battle": "battle.ogg",
                "wesnoth-breaking-the-chains": "breaking_the_chains.ogg",
                "wesnoth-casualties-of-war": "casualties_of_war.ogg",
                "wesnoth-elvish-theme": "elvish-theme.ogg",
                "wesnoth-frantic": "frantic.ogg",
                "wesnoth-heroes-rite": "heroes_rite.ogg",
                "wesnoth-into-the-shadows": "into_the_shadows.ogg",
                "wesnoth-journeys-end": "journeys_end.ogg",
                "wesnoth-knalgan-theme": "knalgan_theme.ogg",
                "wesnoth-knolls": "knolls.ogg",
                "wesnoth-legends-of-the-north": "legends_of_the_north.ogg",
                "wesnoth-love-theme": "love_theme.ogg",
                "wesnoth-loyalists": "loyalists.ogg",
                "wesnoth-northern-mountains": "northern_mountains.ogg",
                "wesnoth-northerners": "northerners.ogg",
                "wesnoth-nunc-dimittis": "nunc_dimittis.ogg",
                "wesnoth-return-to-wesnoth": "return_to_wesnoth.ogg",
                "wesnoth-revelation": "revelation.ogg",
                "wesnoth-siege-of-laurelmor": "siege_of_laurelmor.ogg",
                "wesnoth-silvan-sanctuary": "silvan_sanctuary.ogg",
                "wesnoth-suspense": "suspense.ogg",
                "wesnoth-the-city-falls": "the_city_falls.ogg",
                "wesnoth-the-dangerous-symphony": "the_dangerous_symphony.ogg",
                "wesnoth-the-deep-path": "the_deep_path.ogg",
                "wesnoth-the-king-is-dead": "the_king_is_dead.ogg",
                "wesnoth-underground": "underground.ogg",
                "wesnoth-vengeful": "vengeful.ogg",
                "wesnoth-wanderer": "wanderer.ogg",
                "wesnoth-weight-of-revenge": "weight_of_revenge.ogg",
            },
        ),
    ),
    Package(
        "openclonk-data",
        "Martin Strohmeier (K-Pone)",
        (
            Licence(
                "CC-BY-3.0",
                anchor="Some files belonging to the game content are licensed under the",
                proof="Creative Commons Attribution 3.0 license",
            ),
            Licence(
                "CC-BY-3.0",
                anchor="If not stated otherwise",
                proof="CC Attribution 3.0 license",
                file=OPENCLONK + "authors.txt",
                paragraphs=3,  # the licence line, then the table that credits K-Pone
            ),
        ),
        # K-Pone wrote the music in several styles and tagged each file's genre; one of each
        # style we use, the reggae, rock and untagged ones stay out.
        (
            Recording(
                "orchestral",
                "openclonk-urban-bolero",
                OPENCLONK + "UrbanBolero.ogg",
                "CC-BY-3.0",
                "Vorbis tag genre=Orchestral",
            ),
            Recording(
                "ambient",
                "openclonk-lucid-dream",
                OPENCLONK + "LucidDream.ogg",
                "CC-BY-3.0",
                "Vorbis tag genre=Ambient",
            ),
            Recording(
                "electronic",
                "openclonk-crushed-ice-cocktail",
                OPENCLONK + "@CrushedIceCocktail.ogg",
                "CC-BY-3.0",
                "Vorbis tag genre=House",
            ),
        ),
    ),
    Package(
        "fretsonfire-songs-muldjord",
        "Muldjord (El Senator), www.muldjord.com",
        (
            Licence(
                "CC-BY-SA-3.0",
                anchor="The songs, performances and fret files are all Copyright",
                proof="Creative Commons Attribution ShareAlike licence 3.0",
            ),
        ),
        _frets_on_fire(
            "usr/share/games/fretsonfire/data/songs/muldjord/",
            "muldjord",
            "CC-BY-SA-3.0",
            "Vorbis tag genre=Death Metal; Muldjord is a Danish metal band (copyright file)",
            ["armygeddon", "chaos_god", "internal_degeneration", "mutilated_mime"],
        ),
    ),
    Package(
        "fretsonfire-songs-sectoid",
        "Sectoid (Carlos Viola Iborra)",
        (
            Licence(
                "Expat",
                anchor="The songs, performances and fret files are all Copyright",
                proof="Permission is hereby granted, free of charge",
                paragraphs=4,  # the copyright line and the whole permission notice
            ),
        ),
        # The fourth song, "Feelings", has no tag or title that says its style: left out.
        _frets_on_fire(
            "usr/share/games/fretsonfire/data/songs/sectoid/",
            "sectoid",
            "Expat",
            "guitar-game song pack of distorted-guitar songs; titles (Metal madness, ...)",
            ["Escape from chaosland", "Metal madness", "War of freedom"],
        ),
    ),
    Package(
        "marsshooter-data",
        "Obsidian Shell",
        (Licence("CC-BY-SA-3.0", anchor="Files: data/audio/music/*", proof="License: CC-BY-SA-3.0"),),
        _files(
            "metal",
            MARS,
            "CC-BY-SA-3.0",
            "Vorbis tag genre=Female Fronted Metal (albums Elysia, Angelic Asylum by Obsidian Shell)",
            {
                "obsidian-shell-megtort-alom": "menu.ogg",
                "obsidian-shell-farkaskonny": "tutorial.ogg",
                "obsidian-shell-ezer-ev": "music/01_-_Ezer_Ev.ogg",
                "obsidian-shell-orphanage": "music/02_orphanage.ogg",
                "obsidian-shell-fear": "music/03_fear.ogg",
                "obsidian-shell-elveszett-lelkek": "music/06_-_Elveszett_Lelkek.ogg",
                "obsidian-shell-starfall": "music/06_starfall.ogg",
                "obsidian-shell-vermocsar": "music/07_-_Vermocsar.ogg",
                "obsidian-shell-second-birth": "music/08_second_birth.ogg",
                "obsidian-shell-wings-of-cruelty": "music/09_wings_of_cruelty.ogg",
                "obsidian-shell-farewell": "music/10_farewell.ogg",
                "obsidian-shell-misanthropia": "music/12_-_Misanthropia.ogg",
            },
        ),
    ),
    Package(
        "widelands-data",
        "MiddleFinger (ingame_15-17); Klaus Halfmann (ingame_28); the Widelands Development Team",
        (
            Licence(
                "GPL-2+",
                anchor="Copyright: 2002-2019 by the Widelands Development Team",
                proof="License: GPL-2+",
            ),
        ),
        _files(
            "metal",
            WIDELANDS,
            "GPL-2+",
            "Vorbis tag genre=Thrash Metal (artist MiddleFinger)",
            {
                "widelands-middlefinger-01": "ingame_15.ogg",
                "widelands-middlefinger-02": "ingame_16.ogg",
                "widelands-middlefinger-03": "ingame_17.ogg",
            },
        )
        + _files(
            "folk",
            WIDELANDS,
            "GPL-2+",
            "Vorbis tag genre=folk (The beauty of the flat lands, Klaus Halfmann)",
            {"widelands-beauty-of-the-flat-lands": "ingame_28.ogg"},
        ),
    ),
    Package(
        "nexuiz-music",
        "Gerd 'elysis' Raudenbusch, blkrbt, Parapraxis (Nexuiz soundtrack)",
        (
            Licence(
                "GPL-2+",
                anchor="This program is free software; you can redistribute it and/or",
                proof="either version 2",
            ),
        ),
        # Untagged Northern Lights and Beast of Insanity (its composer's only track here, no
        # genre tag) stay out.
        _files(
            "electronic",
            NEXUIZ,
            "GPL-2+",
            "synth and drum-machine tracks by electronic producers elysis and blkrbt, Parapraxis "
            "tagged genre=Electronic; percussive share 0.18-0.61",
            {
                "nexuiz-brainsukker": "brainsukker.ogg",
                "nexuiz-breakdown-easy": "breakdown-easy.ogg",
                "nexuiz-calling-bogus": "calling-bogus.ogg",
                "nexuiz-chaos-fog": "chaos-fog.ogg",
                "nexuiz-infight": "infight.ogg",
                "nexuiz-neuronal-diving": "neuronal-diving.ogg",
                "nexuiz-subcities": "subcities.ogg",
                "nexuiz-thru-the-mirror": "thru-the-mirror.ogg",
                "nexuiz-brokenlight": "brokenlight.ogg",
                "nexuiz-desert3": "desert3.ogg",
                "nexuiz-ninesix": "ninesix.ogg",
                "nexuiz-sixtyfour": "sixtyfour_.ogg",
                "nexuiz-sixtyfour-revisited": "sixtyfour_revisited.ogg",
                "nexuiz-stairs": "stairs.ogg",
                "nexuiz-digital-pursuit": "digital-pursuit.ogg",
            },
        ),
    ),
    Package(
        "naev-data",
        "Nikola Whallon (ambient1-3), Askyel (ambient4), Zeropage (ambiphonic)",
        (
            Licence(
                "GPL-3 or CC-BY-3.0",
                anchor="Files: ./dat/snd/music/ambient1.ogg",
                proof="License: GPL-3 or CC-BY-3.0",
                per_file=True,
            ),
            Licence(
                "CC-BY-3.0",
                anchor="Files: ./dat/snd/music/ambiphonic.ogg",
                proof="License: CC-BY-3.0",
                per_file=True,
            ),
            Licence(
                "CC-BY-SA-3.0",
                anchor="Files: ./dat/snd/music/ambient4.ogg",
                proof="License: CC-BY-SA-3.0",
                per_file=True,
            ),
        ),
        # naev's "ambient" game state also plays electronic tracks, so the game's use is not
        # the label here: file titles and tags are.
        _files(
            "ambient",
            NAEV,
            "GPL-3 or CC-BY-3.0",
            "title Ambient N (Nikola Whallon)",
            {
                "naev-ambient1": "ambient1.ogg",
                "naev-ambient2": "ambient2.ogg",
                "naev-ambient2-5": "ambient2_5.ogg",
                "naev-ambient3": "ambient3.ogg",
            },
        )
        + _files(
            "ambient",
            NAEV,
            "CC-BY-SA-3.0",
            "file name ambient4 (Askyel); no beat",
            {"naev-ambient4": "ambient4.ogg"},
        )
        + _files(
            "ambient",
            NAEV,
            "CC-BY-3.0",
            "Vorbis tag album=Ambient Pills (Zeropage); little percussion (percussive share 0.26)",
            # Its album mate void_sensor.ogg runs on a steady beat (percussive share 0.42, the
            # level of the techno tracks): not what a listener calls ambient, so it stays out.
            {"naev-ambiphonic": "ambiphonic.ogg"},
        ),
        # Askyel's eureka and terminal carry genre=Electronic but have hardly any beat
        # (percussive share 0.08 and 0.17): they sit between the two styles, so they stay out.
    ),
    Package(
        "singularity-music",
        "Max McCracken (Maxstack)",
        (
            Licence(
                "CC-BY-SA-3.0",
                anchor="Copyright (C) 2007-2008,2012 Max McCracken",
                proof="CREATIVE COMMONS PUBLIC LICENSE",
                paragraphs=3,  # the copyright line, "License", the start of the CC BY-SA text
            ),
            Licence(
                "CC-BY-SA-3.0",
                anchor="Thanks to Max McCracken for providing these tunes",
                proof="BY-SA 3.0 license",
                file="usr/share/doc/singularity-music/README",
            ),
        ),
        # A slow synth soundtrack, some of it with drums: the four tracks with no beat to speak
        # of (percussive share < 0.1; the next is 0.11) are ambient, the rest stay out.
        _files(
            "ambient",
            "usr/share/games/singularity/music/",
            "CC-BY-SA-3.0",
            "beatless synth music (Endgame: Singularity soundtrack): the album's tracks with "
            "percussive share < 0.1",
            {
                "singularity-awakening": "Awakening.ogg",
                "singularity-coherence": "Coherence.ogg",
                "singularity-enemy-unknown": "Enemy Unknown.ogg",
                "singularity-orbital-elevator": "Orbital Elevator.ogg",
            },
        ),
    ),
    Package(
        "0ad-data",
        "Wildfire Games: Omri Lahav and the 0 A.D. musicians (Celtic harp, tin whistles, flute, "
        "dulcimer, violin, ...)",
        (
            Licence("CC-BY-SA-3.0", anchor="Copyright: 2010 Wildfire Games", proof="License: CC-BY-SA-3.0"),
            Licence(
                "CC-BY-SA-3.0",
                anchor="The files in this directory are Copyright",
                proof="Creative Commons Attribution-Share Alike 3.0",
                file="usr/share/games/0ad/mods/public/public.zip!audio/LICENSE.txt",
                paragraphs=2,
            ),
        ),
        # The tracks 0 A.D. plays for its two Celtic civilisations (simulation/data/civs/
        # brit.json and gaul.json): folk tunes on acoustic instruments.
        _files(
            "folk",
            ZERO_AD,
            "CC-BY-SA-3.0",
            "played for the Celtic civilisations (civs/brit.json, civs/gaul.json); Celtic folk instruments",
            {
                "0ad-the-fledgling-kingdom": "The_Fledgling_Kingdom.ogg",
                "0ad-solstice-festival": "Solstice_Festival.ogg",
                "0ad-whistler": "Whistler.ogg",
                "0ad-as-seasons-change": "As_Seasons_Change.ogg",
                "0ad-highland-mist": "Highland_Mist.ogg",
                "0ad-celtica": "Celtica.ogg",
                "0ad-mountain-idyll": "Mountain_Idyll.ogg",
                "0ad-albian-nocturne": "Albian_Nocturne.ogg",
                "0ad-celtic-pride": "Celtic_Pride.ogg",
                "0ad-cisalpine-gaul": "Cisalpine_Gaul.ogg",
                "0ad-harvest-festival": "Harvest_Festival.ogg",
                "0ad-waters-edge": "Water's_Edge.ogg",
                "0ad-sunrise": "Sunrise.ogg",
                "0ad-harvest-moon": "Harvest_Moon.ogg",
            },
        ),
    ),
)


def recordings() -> list[tuple[Package, Recording]]:
    """Every recording with its package, in catalogue order."""
    return [(package, rec) for package in PACKAGES for rec in package.recordings]


def check() -> None:
    """Fail loudly on a catalogue mistake (a typo here would silently mislabel or mislicense)."""
    seen: set[str] = set()
    for package, rec in recordings():
        if rec.style not in STYLES:
            raise ValueError(f"{rec.rec}: unknown style {rec.style!r}")
        if not REC_ID.match(rec.rec) or rec.rec in seen:
            raise ValueError(f"{rec.rec}: recording ids must be unique and match {REC_ID.pattern}")
        if rec.licence not in {lic.name for lic in package.licences}:
            raise ValueError(f"{rec.rec}: licence {rec.licence!r} is not one {package.name} states")
        seen.add(rec.rec)
