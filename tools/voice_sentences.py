"""Running speech for the voice data tools: sentences with none of the commands in them.

Two fixed sets that never share a sentence: :data:`TRAIN` (negatives for training, spoken by every
training engine) and :data:`EVAL` (the false-accept speech of ``tools/eval_voice.py``, spoken by the
engine left out). Near misses sit in both as a household says them ("not yet", "I know", "the top
shelf", "in stock", "we often"): a command model has to stay quiet through them. Generated
sentences (:func:`babble_sentence`) add variety: random everyday words strung together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

TRAIN: Final = (
    "the kettle is boiling, could you pour me a cup of tea",
    "I think we should leave a little earlier tomorrow morning",
    "the children are playing in the garden behind the house",
    "have you seen my keys, I left them near the door",
    "it looks like it will rain again this afternoon",
    "we often go for a walk after dinner when the weather is nice",
    "the top shelf is where we keep the old photo albums",
    "they were out of stock at the shop, so I bought a different brand",
    "I know, but it is not ready yet",
    "the train was late again and the platform was crowded",
    "put the plates in the cupboard next to the sink",
    "my sister called to say she will visit us at the weekend",
    "could you turn the music down a little, the baby is sleeping",
    "the dog wants to go outside, he has been waiting by the door",
    "I forgot to buy bread, we need some for breakfast",
    "this recipe needs two eggs, some flour and a pinch of salt",
    "the meeting has been moved to half past three",
    "what time does the film start tonight",
    "the heating makes a strange noise when it starts up",
    "please remember to water the plants while I am away",
    "the window in the bedroom will not close properly",
    "we watched a documentary about whales last night",
    "the shop around the corner sells very good coffee",
    "my phone battery is almost empty, where is the charger",
    "he said he would fix the bike before the summer",
    "the soup is too hot, let it cool down for a minute",
    "I have not decided yet what to cook for lunch",
    "the stock market went up a little today",
    "she often reads a book before going to sleep",
    "the cat jumped from the top of the fridge",
    "you know what I mean, it was a very long day",
    "the printer is out of paper again",
    "we need to clean the kitchen before the guests arrive",
    "my favourite colour has always been dark green",
    "the bus stops right in front of the library",
    "let us try the new restaurant down the road",
    "the football match was really exciting until the last minute",
    "can you help me carry these boxes upstairs",
    "the garden needs some work after all that wind",
    "I will call you back when I get home",
    # near misses in their usual company (added for the second data set): said in passing, never a command
    "I know you are busy, but could you help me for a minute",
    "not now, maybe later this evening",
    "the snow fell all night and covered the car",
    "there is a little shop at the top of the hill",
    "I guess it is time to go to bed",
    "yeah, that sounds like a good plan to me",
    "he coughed all night and could not sleep",
    "they know the way, they have been here before",
    "the pot is still hot, be careful",
    "let us check the stock of rice in the cupboard",
    "I have often wondered why the clock runs slow",
    "you should not touch the top of the oven",
    "we got back home just after midnight",
    "the yellow paint is still wet",
    "who knows what the weather will be like next week",
    "can you show me how this works",
    "the cost of the tickets went up again",
    "once upon a time there was a little fox",
    "the summer has gone by so quickly",
    "we need one more chair for the table",
    "it was so cold that the lake froze over",
    "the nose of the plane was painted red",
    "a lot of people came to the concert",
    "he left his coat at his friend's house",
    "do not worry, I will sort it out tomorrow",
    "the boss wants the report by friday",
    "I lost my gloves somewhere in the park",
    "my son is going to school by bus",
    "that is the last of the chocolate biscuits",
    "nobody knows the answer yet",
)
EVAL: Final = (
    "the lights in the hallway flicker every evening",
    "we should book the holiday before the prices go up",
    "there is a parcel waiting for you at the post office",
    "the neighbours are having a party in their garden",
    "I do not know where I put my glasses",
    "the bakery sells fresh bread every morning at seven",
    "we have not finished painting the living room yet",
    "the top drawer is full of old batteries and cables",
    "they often come over for dinner every friday",
    "the supermarket had plenty of apples in stock",
    "remember to take an umbrella, the sky looks grey",
    "my brother is learning to play the guitar",
    "the washing machine finished a few minutes ago",
    "could you pass me the salt and the pepper please",
    "the cinema was almost empty when we arrived",
    "I usually take the train to work but today I drove",
    "the baby finally fell asleep after a long story",
    "there is a small crack in the kitchen window",
    "we planted tomatoes and beans in the spring",
    "the doctor said I should drink more water",
    "this chair is much more comfortable than the old one",
    "the radio played an old song I had almost forgotten",
    "my grandmother makes the best apple pie in the family",
    "the car needs new tyres before the winter",
    "let me check the calendar and tell you tomorrow",
    "the museum is closed every monday",
    "the fridge is making that humming noise again",
    "he spent the whole afternoon reading in the park",
    "we ran out of milk, could you get some later",
    "the wind blew the leaves all over the path",
    "she has been working from home since the spring",
    "a cup of hot chocolate would be lovely right now",
    "the teacher asked the pupils to write a short story",
    "I cannot find the remote control anywhere",
    "they are building a new bridge across the river",
    "the shower takes a long time to warm up",
    "our flight leaves early in the morning",
    "please close the gate so the dog does not escape",
    "the market square is busy every saturday",
    "this jacket is warm enough for a cold evening",
)


def babble_sentence(rng: np.random.Generator, words: Sequence[str], length: tuple[int, int] = (5, 12)) -> str:
    """Everyday words strung together: running speech with no grammar, for variety."""
    n = int(rng.integers(*length))
    return " ".join(str(w) for w in rng.choice(np.asarray(words), size=n))
