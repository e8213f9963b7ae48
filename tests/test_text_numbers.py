"""Tests of English text normalisation: phone numbers, dates, context
abbreviations (St., Dr., Ft.), fractions, temperatures, and what must not change;
and of Mandarin numbers: signs, years, vulgar fractions, the minus sign."""

import time

import pytest

from semtts.text.cleaners import english_cleaner, mandarin_cleaner
from semtts.text.dates import date_to_words, expand_english_dates
from semtts.text.numbers import expand_english_numbers, fraction_to_words, phone_number_to_words
from semtts.text.numbers_cmn import VULGAR_FRACTIONS, expand_mandarin_numbers


# Phone numbers ----------------------------------------------------------------
# Read digit by digit, a comma between groups.
PHONES = [
    ("Call 555-1234 now.", "call five five five, one two three four now."),
    ("(020) 7946 0958", "zero two zero, seven nine four six, zero nine five eight"),
    ("+1 415 555 0100", "plus one, four one five, five five five, zero one zero zero"),
    ("+1 (415) 555-0100", "plus one, four one five, five five five, zero one zero zero"),
    ("415-555-0100", "four one five, five five five, zero one zero zero"),
    ("415.555.0100.", "four one five, five five five, zero one zero zero."),
    ("1-800-555-0199", "one, eight zero zero, five five five, zero one nine nine"),
    ("+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
    ("Phone: 555-1234, ext. 5", "phone: five five five, one two three four, ext. five"),
    ("Call 911 now.", "call nine one one now."),  # emergency numbers after call / dial
    ("He dialled 999.", "he dialled nine nine nine."),
    ("Room 911, call 112.5 units", "room nine hundred eleven, call one hundred twelve point five units"),
]

# Ranges and short digit groups are not phone numbers.
NOT_PHONES = [
    ("pages 10-20", "pages ten to twenty"),
    ("in 2-3 days", "in two to three days"),
    ("from 1990-2000", "from nineteen ninety to two thousand"),
    ("500-1000 people", "five hundred to one thousand people"),  # round: a range
    ("1-2-3", "one to two to three"),  # too few digits for a phone number
    ("+5 points", "plus five points"),
    ("(1990) 2000", "nineteen ninety two thousand"),
]


def test_phone_number_to_words():
    assert phone_number_to_words("555-1234") == "five five five, one two three four"
    assert phone_number_to_words("+1 (415) 555 0100").startswith("plus one, four one five,")


# Dates --------------------------------------------------------------------------
DATES = [
    ("March 3, 2021", "march third, twenty twenty one"),
    ("March 3 2021", "march third, twenty twenty one"),
    ("March 3rd", "march third"),
    ("3 March 2021", "the third of march, twenty twenty one"),
    ("on the 3rd of March", "on the third of march"),
    ("3rd March", "the third of march"),
    ("Dec. 25, 2020", "december twenty fifth, twenty twenty"),
    ("Sept 1st", "september first"),
    ("July 4th, 1776", "july fourth, seventeen seventy six"),
    ("March 3-5, 2021", "march third to fifth, twenty twenty one"),
    ("on 2021-03-04.", "on march fourth, twenty twenty one."),
    ("3/4/2021", "march fourth, twenty twenty one"),  # US: month first
    ("12-25-2020", "december twenty fifth, twenty twenty"),
    ("25/12/2020", "december twenty fifth, twenty twenty"),  # 25 cannot be a month
    ("in Dec. 2020", "in december twenty twenty"),
    ("June 2021", "june twenty twenty one"),
]


@pytest.mark.parametrize(
    "raw",
    ["February 30", "2021-13-01", "13/13/2020", "may 5", "March 3.5", "March 300", "3/4/21", "3/4"],
)
def test_what_is_not_a_date_is_left_to_the_number_reader(raw):
    assert expand_english_dates(raw) == raw


def test_date_to_words():
    assert date_to_words(2, 29) == "February twenty ninth"
    assert date_to_words(10, 1, 1905, day_first=True) == "the first of October, nineteen oh five"
    with pytest.raises(ValueError, match="no day 31 in month 4"):
        date_to_words(4, 31)


# St., Dr., Ft. by context ---------------------------------------------------------
ABBREVIATIONS = [
    ("St. Louis", "saint louis"),
    ("St. Paul's", "saint paul's"),
    ("St Louis", "saint louis"),
    ("Baker St.", "baker street."),
    ("Baker St., London", "baker street, london"),
    ("Main St is long", "main street is long"),
    ("5th St. is wide", "fifth street is wide"),
    ("I live on Baker St. He likes it.", "i live on baker street. he likes it."),
    ("Dr. Smith", "doctor smith"),
    ("Dr Smith", "doctor smith"),
    ("Mulholland Dr.", "mulholland drive."),
    ("Mulholland Dr is long", "mulholland drive is long"),
    ("the dr. said", "the doctor said"),
    ("Rev. Dr. King", "reverend doctor king"),
    ("Ft. Worth", "fort worth"),
    ("6 ft. tall", "six feet tall"),
    ("Dr, Stop", "dr, stop"),  # no dot and no context: left as written
]


# Fractions, temperatures, signs, numbers --------------------------------------------
@pytest.mark.parametrize(
    "numerator, denominator, expected",
    [
        (1, 2, "one half"),
        (3, 2, "three over two"),
        (3, 4, "three quarters"),
        (2, 3, "two thirds"),
        (1, 7, "one seventh"),
        (5, 16, "five sixteenths"),
        (3, 100, "three hundredths"),
        (1, 13, "one over thirteen"),
        (1, 0, "one over zero"),
    ],
)
def test_fraction_to_words(numerator, denominator, expected):
    assert fraction_to_words(numerator, denominator) == expected


FRACTIONS_AND_SIGNS = [
    ("1/2 cup", "one half cup"),
    ("3/4 of them", "three quarters of them"),
    ("1 1/2 cups", "one and one half cups"),
    ("-1/2", "minus one half"),
    ("24/7", "twenty four seven"),
    ("25°C", "twenty five degrees celsius"),
    ("-5 °C", "minus five degrees celsius"),
    ("1°F", "one degree fahrenheit"),
    ("98.6°F.", "ninety eight point six degrees fahrenheit."),
    ("30° angle", "thirty degrees angle"),
    ("No. 5", "number five"),
    ("#1 fan", "number one fan"),
    ("-5 degrees", "minus five degrees"),
    ("1,000,000", "one million"),
    ("1,234.56", "one thousand two hundred thirty four point five six"),
    # money with a scale word or its news abbreviation: amount, scale, then the currency
    ("It costs $1.5 million.", "it costs one point five million dollars."),
    ("a $2bn deal", "a two billion dollars deal"),
    ("£10k prize", "ten thousand pounds prize"),
    # yen (no hundredths: decimals as such) and amounts finer than a cent, as decimal amounts
    ("It costs ¥7 today.", "it costs seven yen today."),
    ("¥1,500 or 7.5¥", "one thousand five hundred yen or seven point five yen"),
    ("a ¥2bn fund", "a two billion yen fund"),
    ("Pay $0.001 now.", "pay zero point zero zero one dollars now."),
    ("$1.999 each", "one point nine nine nine dollars each"),
    ("¥1.00 and $1.500", "one yen and one dollar fifty cents"),  # trailing zeros add no finer part
    ("$5M round", "five million dollars round"),
    ("€2.25 Trillion", "two point two five trillion euros"),
    ("$5 m away", "five dollars m away"),  # a spaced letter is no scale
    ("$5 mb", "five dollars mb"),
    # units after a number (espeak would spell them): singular for exactly one, ranges read first
    ("It weighs 5 kg and 1 kg.", "it weighs five kilograms and one kilogram."),
    ("He ran 5-10 km in 20 min.", "he ran five to ten kilometers in twenty minutes."),
    ("1.5km away at 60 mph", "one point five kilometers away at sixty miles per hour"),
    ("a 2.4 GHz chip with 16 GB", "a two point four gigahertz chip with sixteen gigabytes"),
    ("120 km/h", "one hundred twenty kilometers per hour"),
    ("5 m away, 4G", "five m away, four g"),  # no unit: a bare m, a letter glued to the number
    ("1/2 km", "one half km"),
]


# What must not change -------------------------------------------------------------
REGRESSIONS = [
    ("It is 10:30.", "it is ten thirty."),
    ("at 4:05pm", "at four oh five pm"),
    ("$5.50 or £3", "five dollars fifty cents or three pounds"),
    ("The 1990s and the 80s", "the nineteen nineties and the eighties"),
    ("COVID19, H2O, mp3", "covid nineteen, h two o, mp three"),
    ("007 and 2005", "zero zero seven and two thousand five"),
    ("20-30%", "twenty to thirty percent"),
    ("the 4th of July", "the fourth of july"),
    ("I said no.", "i said no."),
]


def test_number_reader_alone_and_mandarin():
    # Dates are the cleaner's (semtts.text.dates runs first); phones are the number reader's.
    assert expand_english_numbers("call 555-1234").strip() == "call five five five, one two three four"
    assert expand_english_numbers("555-1234").strip() == "five hundred fifty five to twelve thirty four"
    assert expand_english_numbers("March 3") == "March three"
    # Mandarin numbers do not change.
    assert expand_mandarin_numbers("2008年, -5, 1,000, 3/4") == "二零零八年, 负五, 一千, 四分之三"
    assert expand_mandarin_numbers("9" * 5000 + "%") == "百分之" + "九" * 5000  # past int()'s limit


# Regressions of the first version of dates, phones and context abbreviations ----------
REVIEW_REGRESSIONS = [
    # A determiner before "Dr."/"Ft."/"St." is no street name: Doctor, Fort, Saint.
    ("The Dr. said he would recover.", "the doctor said he would recover."),
    ("A Dr. was sent for", "a doctor was sent for"),
    ("His Dr. advised", "his doctor advised"),
    ("Our Dr. arrived", "our doctor arrived"),
    ("The Dr said", "the doctor said"),
    ("The Ft. was abandoned", "the fort was abandoned"),
    ("THE DR. SAID", "the doctor said"),
    # A Title-case sentence opener after the abbreviation is no name.
    ("Market St. Several people came.", "market street. several people came."),
    ("Mulholland Dr. When he left", "mulholland drive. when he left"),
    ("12 MAIN ST. THE END", "twelve main street. the end"),
    ("12 MAIN ST. IN BOSTON", "twelve main saint in boston"),  # all caps: "IN" may be a name
    # Year and page ranges are no phone numbers; without a cue "555-1234" is a range too.
    ("793-1066", "seven hundred ninety three to one thousand sixty six"),
    ("(980-1037)", "nine hundred eighty to one thousand thirty seven"),
    ("from 476-1453", "from four hundred seventy six to fourteen fifty three"),
    ("pp. 998-1002", "pp. nine hundred ninety eight to one thousand two"),
    ("125-1,500 casualties", "one hundred twenty five to fifteen hundred casualties"),
    ("1862-63-64", "eighteen sixty two to sixty three to sixty four"),
    ("30-32-34-36 inches", "thirty to thirty two to thirty four to thirty six inches"),
    ("phone number 555-1234", "phone number five five five, one two three four"),
    ("Tel. 555-1234", "tel. five five five, one two three four"),
    ("No. 555-1234", "number five five five, one two three four"),
    ("dial #555-1234", "dial five five five, one two three four"),
    ("123-45-6789", "one two three, four five, six seven eight nine"),
    # Fiscal and academic years, idioms, no fraction before an ordinal suffix.
    ("1902/03", "nineteen oh two to oh three"),
    ("in 1914/15.", "in nineteen fourteen to fifteen."),
    ("1999/00", "nineteen ninety nine to two thousand"),
    ("1902/04", "one thousand nine hundred two over four"),
    ("20/20 vision", "twenty twenty vision"),
    ("10/10", "ten out of ten"),
    ("2/5th", "two fifth"),
    # A day and a month before a name is no date.
    ("He lived at 12 May Street.", "he lived at twelve may street."),
    ("The office at 4 March Lane", "the office at four march lane"),
    ("on 3 March The next day", "on the third of march the next day"),
    # A sentence-final abbreviated month keeps its full stop.
    ("They left on 3 Jan. The snow was deep.", "they left on the third of january. the snow was deep."),
    ("They left on 3 Jan.", "they left on the third of january."),
    # "the" only for the bare "3 March".
    ("the 10th and 11th of June", "the tenth and eleventh of june"),
    ("3 March", "the third of march"),
]

# Signs, separators and fractions that the cleaner lost or misread ------------------------
SIGNS_SEPARATORS_FRACTIONS = [
    # the minus sign U+2212 (and NFKC's for a superscript minus): a sign, or subtraction between numbers
    ("\u22125°C", "minus five degrees celsius"),
    ("5 \u2212 3", "five minus three"),
    ("\u207b2 points", "minus two points"),
    ("5\u201210", "five to ten"),  # the figure dash is the hyphen of numbers
    # thousands separators before a letter or after a month name
    ("1,000km", "one thousand kilometers"),
    ("the 1,000th time", "the one thousandth time"),
    ("1,000s of people", "thousands of people"),
    ("In June 10,000 people", "in june ten thousand people"),
    ("March 3, 2021", "march third, twenty twenty one"),
    ("1,000.5", "one thousand point five"),
    # vulgar fractions, a digit before one a whole part
    ("2\u00be cups", "two and three quarters cups"),
    ("\u00bd", "one half"),
    ("5\u00bd%", "five and one half percent"),
    ("1 \u00bd cups and \u215e", "one and one half cups and seven eighths"),
    # negative money and cents alone
    ("-$5.50", "minus five dollars fifty cents"),
    ("$-5", "minus five dollars"),
    ("$.99", "ninety nine cents"),
    ("\u2212$5", "minus five dollars"),
    ("(-5\u20ac)", "minus five euros"),
    ("-$1.5 million", "minus one point five million dollars"),
]

CLEANED = {
    "phone": PHONES, "not phone": NOT_PHONES, "date": DATES, "abbreviation": ABBREVIATIONS,
    "fraction, sign": FRACTIONS_AND_SIGNS, "unchanged": REGRESSIONS, "review": REVIEW_REGRESSIONS,
    "sign, separator": SIGNS_SEPARATORS_FRACTIONS,
}


@pytest.mark.parametrize(
    "raw, expected",
    [pytest.param(raw, expected, id=f"{topic}: {raw}") for topic, cases in CLEANED.items() for raw, expected in cases],
)
def test_english_cleaner(raw, expected):
    assert english_cleaner(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("\u22125度", "负五度"),  # the minus sign U+2212
        ("-5%", "负百分之五"),  # the sign before 百分之
        ("\u22123.5%", "负百分之三点五"),
        ("10000年", "一万年"),  # five digits are no year
        ("2008年", "二零零八年"),
    ],
)
def test_mandarin_signs_and_years(raw, expected):
    assert mandarin_cleaner(raw) == expected


# Mandarin vulgar fractions and the minus sign U+2212 ------------------------------------
MANDARIN_FRACTIONS_AND_MINUS = [
    # vulgar fractions: 分之, a whole part before one with 又, a sign before it 负
    ("\u00bd杯", "二分之一杯"),
    ("2\u00bd", "二又二分之一"),
    ("\u2154", "三分之二"),
    ("\u2153", "三分之一"),
    ("\u2152", "十分之一"),  # two-digit denominator
    ("\u215e", "八分之七"),
    ("\u2189", "三分之零"),
    ("2 \u00be", "二又四分之三"),
    ("1,000\u00bd", "一千又二分之一"),
    ("-\u00bd", "负二分之一"),
    ("\u22122\u00be", "负二又四分之三"),
    ("5\u00bd%", "百分之五又二分之一"),
    ("2 1\u20442", "二又二分之一"),  # NFKC's spelling, the fraction slash U+2044
    ("1\u20442", "二分之一"),
    # the minus sign U+2212: between numbers 减, before a number 负, like "-"
    ("5\u22123", "五减三"),
    ("5 \u2212 3", "五减三"),
    ("0.5\u22120.25", "零点五减零点二五"),
    ("5%\u22123%", "百分之五减百分之三"),
    ("\u00bd\u2212\u2153", "二分之一减三分之一"),
    ("\u22125", "负五"),
    ("\u22125%", "负百分之五"),
    # not changed: a minus sign inside a word
    ("a\u22125", "a\u2212五"),
]


@pytest.mark.parametrize("raw, expected", MANDARIN_FRACTIONS_AND_MINUS)
def test_mandarin_vulgar_fractions_and_minus_sign(raw, expected):
    assert expand_mandarin_numbers(raw) == expected


# Mandarin dates, slashes and hyphens between numbers -----------------------------------
MANDARIN_DATES_SLASHES_HYPHENS = [
    ("2026-11-27", "二零二六年十一月二十七日"),
    ("2026/11/27号", "二零二六年十一月二十七号"),  # its own 日 or 号 kept, not doubled
    ("2026.1.5日", "二零二六年一月五日"),
    ("2024-02-29", "二零二四年二月二十九日"),  # a leap day
    ("2026-02-29", "二零二六,零二,二九"),  # no such day: digit by digit
    ("2026-11", "二零二六年十一月"),
    ("3/4的人", "四分之三的人"),
    ("3.5/4", "四分之三点五"),
    ("1/2/3", "一,二,三"),
    ("5-10岁", "五到十岁"),  # ascending: a range
    ("第3-5章", "第三到五章"),
    ("1,000-2,000元", "一千到二千元"),
    ("1.5-2.5米", "一点五到二点五米"),
    ("5%-10%", "百分之五到百分之十"),  # no minus sign after the percent
    ("1990-1995年", "一九九零到一九九五年"),  # years before 年, both digit by digit
    ("比分3-1", "比分三比一"),  # otherwise a score
    ("3-3", "三比三"),
    ("010-12345678", "零一零,一二三四五六七八"),  # a leading zero, or seven digits: a phone number
    ("400-800-1234", "四零零,八零零,一二三四"),
    ("a-5", "a-五"),  # no number before the hyphen
    # review: signs, percents, year ranges, times, codes
    ("-3/4", "负四分之三"),
    ("2023/10", "二零二三年十月"),
    ("降低20-30%", "降低百分之二十到百分之三十"),
    ("月薪10000-20000元", "月薪一万到二万元"),
    ("2022-23赛季", "二零二二到二三赛季"),
    ("1990-95年", "一九九零到九五年"),
    ("9:00-17:00", "九点到十七点"),
    ("8:30", "八点三十分"),
    ("2:05", "两点零五分"),
    ("A100-40GB", "A一百-四十GB"),  # a code: no range, no score
    ("G1234-1次", "G一千二百三十四-一次"),
    ("PyCharm 2023.3.2", "PyCharm 二千零二十三点三.二"),  # a version: no date
    # second review: zero-padded months and seasons, ratios and scores with a colon
    ("2026-09", "二零二六年九月"),
    ("于2026-01发布", "于二零二六年一月发布"),
    ("2008-09赛季", "二零零八到零九赛季"),
    ("比例1:25", "比例一比二十五"),
    ("比分3:1", "比分三比一"),
    ("24:30", "二十四:三十"),  # no such time
    # a tilde between numbers: a range whatever their order
    ("3~5天", "三到五天"),
    ("10~5", "十到五"),
    ("20~30%", "百分之二十到百分之三十"),
    ("2022~23赛季", "二零二二到二三赛季"),
]


@pytest.mark.parametrize("raw, expected", MANDARIN_DATES_SLASHES_HYPHENS)
def test_mandarin_dates_slashes_and_hyphens(raw, expected):
    assert expand_mandarin_numbers(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("5~10岁", "五到十岁"),  # before, the tilde was dropped: 五十岁, fifty
    ("5\uff5e10岁", "五到十岁"),  # the full-width tilde
    ("5\u201310岁", "五到十岁"),  # an en dash
    ("5\u201410岁", "五到十岁"),  # an em dash
    ("2022\u201323赛季", "二零二二到二三赛季"),
    ("你好\u2014世界", "你好,世界"),  # a dash that is no range: a pause, as before
])
def test_mandarin_cleaner_reads_range_marks_between_numbers(raw, expected):
    assert mandarin_cleaner(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("\u00bd杯水", "二分之一杯水"),
        ("加2\u00bd杯", "加二又二分之一杯"),  # NFKC alone would make "2½" "21⁄2"
        ("\uff12\u00be", "二又四分之三"),  # a full-width digit before the fraction
        ("5\u22123等于2", "五减三等于二"),
        ("\u22125度", "负五度"),
        ("\u207b5度", "负五度"),  # NFKC makes the superscript minus U+2212
        ("x\u2212y", "x-y"),  # a minus sign that is no number's is a hyphen, as before
    ],
)
def test_mandarin_cleaner_vulgar_fractions_and_minus_sign(raw, expected):
    assert mandarin_cleaner(raw) == expected


def test_mandarin_and_english_read_the_same_vulgar_fractions():
    for fraction in VULGAR_FRACTIONS:
        assert "分之" in expand_mandarin_numbers(fraction), fraction
        assert english_cleaner("2" + fraction).startswith("two "), fraction  # a whole part, not "twenty ..."


# Robustness ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, start, end",
    [
        ("9" * 4301, "nine nine", "nine nine"),  # past int()'s 4300-digit limit
        ("9" * 5000 + "/3", "nine nine", "nine over three"),
        ("1 " + "9" * 5000 + "/3", "one nine", "nine over three"),
        ("$" + "9" * 5000 + ".50", "nine nine", "nine dollars fifty cents"),
        ("9" * 5000 + "th", "nine nine", "nine ninth"),
        ("9" * 5000 + ".5", "nine nine", "nine point five"),
        ("$" + "9" * 5000 + ".5 million", "nine nine", "nine point five million dollars"),
        ("9" * 5000 + " km", "nine nine", "nine kilometers"),
    ],
)
def test_long_digit_runs_are_read_digit_by_digit(raw, start, end):
    cleaned = english_cleaner(raw)
    assert cleaned.startswith(start) and cleaned.endswith(end)


@pytest.mark.parametrize(
    "raw", ["1" * 20000, "7" * 20000 + "x", "a" + " " * 20000 + "b .", " " * 20000 + ",", "1." + "2" * 20000]
)
def test_long_runs_clean_in_linear_time(raw):
    start = time.perf_counter()
    english_cleaner(raw)
    assert time.perf_counter() - start < 5.0  # quadratic regexes took minutes on 100k characters
