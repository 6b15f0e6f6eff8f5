"""A deterministic Korean sentence generator for the synthetic corpus.

Sentences come from templates over hand-written word lists covering everyday domains: numbers and counted
things, dates, times, money, addresses and places, schedules, weather, device commands, personal names,
phone numbers and short conversational phrases. A template is a string with slots, ``{slot}`` or
``{slot|이/가}`` (a slot followed by the particle form that fits its last syllable). Slots are filled in the
*written* form (``3시 30분``, ``5,000원``, ``010-1234-5678``); the transcript is the written sentence passed
through :func:`kospeech.data.text_normalization.normalize_text`, so it holds only Hangul syllables and spaces.

Person names and places have a *common* pool and a *rare* pool. Base sentences draw from the rare pool with a
small probability, so rare words occur but seldom; held-out users get favourite words from the rare pool that
appear often in their own sentences (see :meth:`SentenceGenerator.sample`).

All randomness comes from the ``random.Random`` passed in, so a seed fixes every sentence.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from kospeech.data.text_normalization import normalize_text

__all__ = [
    "Sentence",
    "SentenceGenerator",
    "FAVOURITE_KINDS",
    "RARE_PERSONS",
    "RARE_PLACES",
    "TEMPLATES",
    "count_syllables",
    "with_particle",
]

MIN_SYLLABLES = 4
MAX_SYLLABLES = 40
FAVOURITE_KINDS = ("person", "place")

_HANGUL_RE = re.compile(r"[가-힣]")
_TRANSCRIPT_RE = re.compile(r"[가-힣]+(?: [가-힣]+)*")
_SLOT_RE = re.compile(r"\{(\w+)(?:\|([^}]+))?\}")

# ---------------------------------------------------------------------------------------------------------------
# Word lists
# ---------------------------------------------------------------------------------------------------------------


def _phrases(text: str) -> Tuple[str, ...]:
    """Split a comma-separated list of (possibly multi-word) phrases."""
    return tuple(phrase.strip() for phrase in text.split(",") if phrase.strip())


def _spaced(text: str) -> Tuple[str, ...]:
    """Split a whitespace-separated list of single words."""
    return tuple(text.split())


SURNAMES = _spaced(
    "김 이 박 최 정 강 조 윤 장 임 한 오 서 신 권 황 안 송 류 전 홍 고 문 양 손 배 백 허 유 남 심 노 하 곽 성 차 주 우 "
    "구 민 진 나 지 엄 채 원 천 방 공 현 함 변 염 여 추 도 소 석 선 설 마 길 연 위 표 명 기 반 왕 금 옥 육 인 맹 "
    "제 모 탁 국 어 은 편 용 예 봉 경 사 부 가 복 태 목 형 피 두 감 음 빈 동 온 호 범 좌 승 간 상 갈 서문 독고"
)

GIVEN_NAMES = _spaced(
    "민준 서준 도윤 예준 시우 하준 주원 지호 지후 준우 준서 건우 도현 현우 지훈 우진 선우 서진 민재 현준 연우 유준 "
    "정우 승우 승현 시윤 준혁 은우 지환 승민 유찬 윤우 민성 준영 시후 진우 지원 수현 재윤 시현 태윤 한결 지안 "
    "서연 서윤 지우 서현 민서 하은 하윤 윤서 지유 지민 채원 수아 지아 지윤 다은 은서 예은 수빈 소율 예린 하린 "
    "소윤 예원 유나 시은 채은 유진 민지 수민 예나 가은 하율 나연 다인 아린 서아 은비 혜원 미영 영희 철수 영수 "
    "순자 경희 정숙 미경 성호 동현 상훈 재민 태호 기현 광수 명수 보람 슬기 나래 다솜 한별 가람 이슬 혜진 은정 "
    "지혜 소영 미숙 영자 말순 옥순 복순 춘자 덕배 만수 칠성 용팔 경민 창호 병철 종훈 석진 대현 형준 규리 효주 "
    "휘성 률아 렬 찬혁 빈우 훤 슬옹 늘찬 꽃님 햇님 똘이 쌍용 뽀순 쫑미 꾀돌 틔움 "
    "재석 명훈 동욱 성민 혁진 태민 윤아 수지 혜리 유리 보영 채령 예지 다현 나은 세영 승희 정연 은혜 현정 "
    "민혁 준호 찬영 범수 태양 영웅 인영 재희 희정 주희 윤희 경수 상민 진영 근호 기철 봉수 판석 길동 춘향 몽룡"
)

RARE_PERSONS = _spaced(
    "남궁라온 제갈윤슬 황보가온 선우다온 독고누리 사공새봄 서문하람 동방로운 탁도담 편여름 어해솔 빈온유 "
    "봉보늬 감찬솔 좌늘봄 모별하 옹이안 견다롱 뇌빛나 궉미르 즙한울 섭벼리 돈아라 묵시내 판라희 순샛별 "
    "곡나린 삼아토 소솔빈 엽초롱 예휘린 란윤재 망결휘 춘뽀미 쾌재승 뿅다래 삑소리 퀸라엘 킴휘경 훈나봄"
)

CITIES = _spaced(
    "서울 부산 대구 인천 광주 대전 울산 세종 수원 성남 고양 용인 창원 청주 전주 천안 안산 포항 김해 제주 춘천 "
    "원주 강릉 속초 여수 순천 목포 경주 안동 구미 진주 통영 거제 군산 익산 평택 의정부 파주 김포 남양주 하남 "
    "광명 시흥 부천 안양 군포 오산 이천 여주 양평 가평 태백 동해 삼척 정선 평창 홍천 충주 제천 공주 보령 서산 "
    "당진 논산 아산 나주 광양 보성 해남 완도 남원 정읍 김제 상주 문경 영주 영천 경산 밀양 양산 사천 거창 울진 "
    "영덕 서귀포 담양 곡성 구례 하동 남해 고성 양양 인제 철원 단양 부여 청양 예산 태안 무주 진안 임실 고창 부안"
)

DISTRICTS = _spaced(
    "강남구 서초구 송파구 마포구 종로구 중구 용산구 성동구 광진구 동대문구 중랑구 성북구 강북구 도봉구 노원구 은평구 "
    "서대문구 양천구 강서구 구로구 금천구 영등포구 동작구 관악구 강동구 해운대구 수영구 동래구 연제구 사하구 "
    "부산진구 수성구 달서구 북구 남구 동구 서구 유성구 대덕구 분당구 수정구 일산동구 덕양구 기흥구 처인구 "
    "팔달구 영통구 권선구 장안구 단원구 상록구 연수구 남동구 부평구 계양구 미추홀구 광산구 덕진구 완산구"
)

NEIGHBOURHOODS = _spaced(
    "역삼동 삼성동 대치동 청담동 압구정동 신사동 논현동 잠실동 방이동 가락동 문정동 합정동 망원동 연남동 서교동 "
    "상수동 이태원동 한남동 성수동 왕십리 건대입구 신림동 봉천동 사당동 노량진동 여의도동 목동 신정동 화곡동 "
    "등촌동 상계동 중계동 하계동 미아동 수유동 쌍문동 창동 불광동 응암동 연희동 신촌동 아현동 공덕동 효창동 "
    "명동 을지로 충무로 혜화동 삼청동 가회동 부암동 평창동 정자동 서현동 야탑동 판교동 광교동 영통동 매탄동"
)

ROADS = _spaced(
    "세종대로 테헤란로 강남대로 올림픽로 한강대로 을지로 종로 퇴계로 남부순환로 동부간선도로 도산대로 언주로 "
    "봉은사로 학동로 압구정로 양재대로 송파대로 천호대로 망우로 동일로 도봉로 통일로 신촌로 양화로 월드컵로 "
    "중앙로 해운대로 수영로 달구벌대로 대학로 충장로 금남로 계룡로 둔산로 판교역로 광교중앙로 월드컵북로"
)

LANDMARKS = _spaced(
    "시청 구청 도서관 병원 약국 우체국 은행 학교 공원 시장 백화점 마트 편의점 카페 식당 영화관 미술관 박물관 "
    "체육관 수영장 터미널 기차역 공항 주차장 경찰서 소방서 주민센터 빵집 꽃집 미용실 세탁소 서점 문구점 놀이터 "
    "동물원 수목원 해수욕장 대학교 유치원 어린이집 헬스장 노래방 피시방 찜질방 목욕탕 정류장 버스터미널 "
    "고속도로 휴게소 주유소 교회 성당 절 시민회관 문화센터 보건소 치과 안과 소아과 한의원 동사무소 법원 세무서"
)

STATIONS = _spaced(
    "서울역 강남역 홍대입구역 신촌역 잠실역 사당역 교대역 선릉역 삼성역 건대입구역 왕십리역 을지로입구역 시청역 "
    "종각역 광화문역 합정역 당산역 여의도역 노량진역 신도림역 구로디지털단지역 가산디지털단지역 수서역 "
    "부산역 서면역 해운대역 동대구역 대전역 광주송정역 수원역 판교역 정자역 인천공항역 김포공항역 용산역 청량리역"
)

RARE_PLACES = _spaced(
    "소래포구 두물머리 을왕리 화담숲 곰배령 비양도 청산도 외연도 덕적도 무의도 내소사 선운사 부석사 봉정사 "
    "월정사 낙산사 감천마을 흰여울마을 오죽헌 하회마을 외암마을 죽녹원 순천만 우포늪 주왕산 월악산 덕유산 "
    "치악산 속리산 마이산 내장산 땅끝마을 만리포 꽃지해변 협재해변 함덕해변 성산일출봉 갯골생태공원 "
    "뱀사골 구룡포 대왕암 몽돌해변 학암포 천리포 쁘띠프랑스 삐에로마을 뽕뜰공원 꿩고개 쐐기골 뙤약볕마을"
)

APARTMENTS = _spaced(
    "래미안 자이 푸르지오 힐스테이트 아이파크 롯데캐슬 더샵 이편한세상 센트럴파크 한신 현대 주공 삼익 우성"
)

WEEKDAYS = _spaced("월요일 화요일 수요일 목요일 금요일 토요일 일요일")

RELATIVE_DAYS = _phrases(
    "오늘, 내일, 모레, 글피, 이번 주말, 다음 주, 다음 주말, 이번 주 금요일, 이번 주 토요일, 다음 주 월요일, "
    "다음 주 수요일, 다음 달, 다음 달 초, 이번 달 말, 오늘 밤, 내일 아침, 내일 저녁, 모레 오후"
)

EVENTS = _phrases(
    "회의, 미팅, 면접, 시험, 발표, 수업, 진료, 치과 예약, 생일 파티, 결혼식, 돌잔치, 동창회, 회식, 출장, 여행, "
    "등산, 운동, 요가, 수영 강습, 피아노 학원, 세미나, 워크숍, 졸업식, 입학식, 집들이, 송년회, 신년회, 건강 검진, "
    "부모님 방문, 택배 수령, 병원 검사, 자동차 정비, 이사, 계약, 상담, 과외, 독서 모임, 축구 경기, 야구 경기, "
    "음악회, 전시회, 캠핑, 낚시, 봉사 활동, 발표 연습, 팀 회의, 주간 보고, 월말 정산, 프로젝트 마감, 장보기, "
    "대청소, 분리수거, 학부모 상담, 영어 회화, 기타 레슨, 필라테스, 반상회, 제사, 벌초, 김장"
)

ACTIVITIES = _phrases(
    "점심, 저녁, 아침, 커피, 영화, 산책, 쇼핑, 운동, 등산, 낚시, 캠핑, 공부, 스터디, 드라이브, 자전거, 볼링, 당구, "
    "탁구, 배드민턴, 테니스, 골프, 노래방, 맛집 탐방, 전시 관람, 뮤지컬, 연극, 술 한잔, 브런치, 야식, 조깅, "
    "헬스, 요리 수업, 사진 촬영, 꽃구경, 단풍 구경, 바다 구경, 한강 산책, 뜨개질, 보드게임, 방탈출"
)
# (item, counter, native count range) for "{count_item}".
COUNTABLES: Tuple[Tuple[str, str, int], ...] = (
    ("사과", "개", 20),
    ("배", "개", 12),
    ("귤", "개", 30),
    ("복숭아", "개", 12),
    ("계란", "개", 30),
    ("만두", "개", 20),
    ("감자", "개", 15),
    ("양파", "개", 10),
    ("호박", "개", 5),
    ("의자", "개", 12),
    ("상자", "개", 10),
    ("커피", "잔", 10),
    ("아메리카노", "잔", 8),
    ("라떼", "잔", 6),
    ("녹차", "잔", 5),
    ("맥주", "잔", 10),
    ("생수", "병", 24),
    ("소주", "병", 6),
    ("우유", "병", 5),
    ("콜라", "병", 6),
    ("주스", "병", 4),
    ("국수", "그릇", 5),
    ("냉면", "그릇", 4),
    ("비빔밥", "그릇", 5),
    ("짜장면", "그릇", 4),
    ("고양이", "마리", 5),
    ("강아지", "마리", 4),
    ("물고기", "마리", 12),
    ("오징어", "마리", 10),
    ("고등어", "마리", 6),
    ("닭", "마리", 3),
    ("책", "권", 10),
    ("공책", "권", 12),
    ("소설책", "권", 5),
    ("잡지", "권", 4),
    ("표", "장", 8),
    ("영화표", "장", 6),
    ("종이", "장", 30),
    ("사진", "장", 40),
    ("우표", "장", 20),
    ("장미", "송이", 24),
    ("튤립", "송이", 12),
    ("국화", "송이", 10),
    ("양말", "켤레", 10),
    ("운동화", "켤레", 3),
    ("셔츠", "벌", 5),
    ("정장", "벌", 3),
    ("자동차", "대", 4),
    ("노트북", "대", 3),
    ("자전거", "대", 5),
)

# (who, upper bound) for "{people}".
PEOPLE_COUNTS: Tuple[Tuple[str, int], ...] = (
    ("손님", 40),
    ("학생", 35),
    ("어른", 10),
    ("아이", 8),
    ("직원", 25),
    ("환자", 20),
    ("관객", 99),
    ("선수", 11),
)

SHOP_ITEMS = _spaced(
    "사과 배 딸기 수박 참외 포도 바나나 토마토 고구마 당근 오이 배추 두부 라면 김밥 떡볶이 순대 빵 케이크 "
    "냄비 프라이팬 숟가락 젓가락 접시 도마 가위 볼펜 연필 지우개 테이프 봉투 쓰레기봉투 빗자루 걸레 베개 이불 담요 "
    "슬리퍼 잠옷 청바지 원피스 코트 패딩 스웨터 넥타이 손수건 귀걸이 목걸이 반지 팔찌 손목시계 향수 립스틱 로션 "
    "초콜릿 과자 아이스크림 우유 치즈 햄 소시지 삼겹살 소고기 닭가슴살 연어 새우 김치 된장 고추장 간장 참기름 "
    "쌀 밀가루 설탕 소금 후추 휴지 물티슈 세제 샴푸 치약 칫솔 수건 우산 장갑 목도리 모자 가방 지갑 안경 "
    "운동화 이어폰 충전기 건전지 전구 마스크 반창고 감기약 소화제 비타민 꽃다발 화분 커피 원두 녹차 티셔츠"
)

DEVICES = _phrases(
    "거실 불, 안방 불, 주방 불, 화장실 불, 현관 불, 베란다 불, 에어컨, 선풍기, 히터, 보일러, 난방, 가습기, 제습기, "
    "공기청정기, 텔레비전, 스피커, 세탁기, 건조기, 식기세척기, 로봇청소기, 전기밥솥, 커피머신, 블라인드, 커튼, "
    "전등, 무드등, 환풍기, 전기장판, 냉장고, 오븐, 정수기, 라디오, 컴퓨터, 모니터, 프린터, 도어락, 온수 매트"
)

DEVICE_ACTIONS = _phrases(
    "켜 줘, 꺼 줘, 켜 주세요, 꺼 주세요, 좀 켜 줄래, 좀 꺼 줄래, 켜 줄 수 있어, 끄면 안 될까, 다시 켜 줘, "
    "잠깐 꺼 둬, 켜 놓을래, 꺼 놓을래, 작동시켜 줘, 멈춰 줘, 중지해 줘, 예약해 줘, 점검해 줘, 켜져 있어, 꺼졌어"
)

MEDIA = _phrases(
    "음악, 노래, 뉴스, 라디오, 팟캐스트, 동요, 클래식, 재즈, 발라드, 트로트, 힙합, 댄스곡, 자장가, 빗소리, "
    "백색소음, 드라마, 예능, 다큐멘터리, 영화, 애니메이션, 날씨 예보, 교통 정보, 주식 시황, 오디오북, 명상 음악, "
    "국악, 가곡, 동화 구연"
)

WEATHER_WORDS = _spaced(
    "비 눈 소나기 안개 태풍 황사 미세먼지 천둥 번개 우박 서리 폭염 한파 장마 강풍 진눈깨비 이슬비 무더위 꽃샘추위"
)

WEATHER_STATES = _phrases(
    "맑대, 흐리대, 덥대, 춥대, 쌀쌀하대, 선선하대, 포근하대, 습하대, 건조하대, 바람이 많이 분대, 비가 온대, "
    "눈이 온대, 구름이 많대, 하늘이 파랗대, 햇볕이 강하대, 일교차가 크대, 무덥대, 후텁지근하대"
)

FOODS = _spaced(
    "김치찌개 된장찌개 순두부찌개 부대찌개 갈비탕 설렁탕 삼계탕 칼국수 수제비 비빔밥 불고기 제육볶음 닭갈비 "
    "떡볶이 짜장면 짬뽕 탕수육 초밥 돈가스 우동 라멘 쌀국수 피자 햄버거 파스타 샐러드 샌드위치 치킨 족발 보쌈 "
    "꽃게탕 해물파전 빈대떡 도토리묵 쭈꾸미 낙지볶음 닭볶음탕 육개장 추어탕 곰탕 물회 회덮밥 갈치조림 고등어구이 "
    "꼬막비빔밥 팥빙수 붕어빵 호떡 떡갈비 순댓국 콩국수 막국수 쫄면 라볶이 어묵탕 계란말이 김치볶음밥 오므라이스 "
    "곱창 삼겹살 냉면 잔치국수 김밥 만둣국 떡국 미역국 콩나물국밥 해장국 감자탕 아귀찜 갈비찜 잡채 전복죽"
)

FAMILY = _spaced(
    "엄마 아빠 어머니 아버지 할머니 할아버지 언니 오빠 누나 형 동생 이모 삼촌 고모 사촌 남편 아내 아들 딸 친구 "
    "선배 후배 팀장님 과장님 부장님 사장님 선생님 교수님"
)

FEELINGS = _phrases(
    "기분이 좋아, 너무 피곤해, 배가 고파, 졸려 죽겠어, 심심해, 행복해, 속상해, 걱정돼, 설레, 긴장돼, 아쉬워, "
    "뿌듯해, 외로워, 답답해, 신나, 어지러워, 목이 말라, 머리가 아파, 허리가 아파, 감기 기운이 있어, 짜증 나, "
    "후련해, 든든해, 서운해, 부끄러워"
)

PHRASES = (
    "안녕하세요",
    "감사합니다",
    "고맙습니다",
    "죄송합니다",
    "괜찮아요",
    "잘 지냈어요",
    "오랜만이에요",
    "다음에 또 봐요",
    "잠깐만 기다려 주세요",
    "다시 한번 말씀해 주시겠어요",
    "천천히 말해 주세요",
    "도와주셔서 고마워요",
    "맛있게 드세요",
    "수고하셨습니다",
    "좋은 하루 보내세요",
    "조심히 들어가세요",
    "축하드려요",
    "네 알겠습니다",
    "그럼요 물론이죠",
    "정말요 몰랐어요",
    "처음 뵙겠습니다",
    "만나서 반갑습니다",
    "실례지만 누구세요",
    "화장실이 어디예요",
    "이거 얼마예요",
    "계산해 주세요",
    "영수증 주세요",
    "포장해 주세요",
    "여기서 먹고 갈게요",
    "물 좀 주시겠어요",
    "메뉴판 좀 보여 주세요",
    "길을 잃어버렸어요",
    "사진 좀 찍어 주시겠어요",
    "잘 먹겠습니다",
    "잘 먹었습니다",
    "다녀오겠습니다",
    "다녀왔습니다",
    "편히 쉬세요",
    "생일 축하해",
    "새해 복 많이 받으세요",
    "메리 크리스마스",
    "주말 잘 보내세요",
    "힘내세요",
    "걱정하지 마세요",
    "무슨 일 있어요",
    "어디 아파요",
    "뭐 하고 있어",
    "밥 먹었어",
    "지금 어디야",
    "언제 도착해",
    "금방 갈게",
    "조금 늦을 것 같아",
    "먼저 출발할게",
    "전화 좀 받아 줘",
    "문자 확인해 봐",
    "나중에 다시 연락할게",
    "오늘 정말 즐거웠어요",
    "그동안 감사했습니다",
    "앞으로 잘 부탁드립니다",
    "이해가 잘 안 돼요",
    "한국어를 조금 할 줄 알아요",
    "천만에요",
    "별말씀을요",
    "아니에요 괜찮아요",
    "그렇군요",
    "좋은 생각이에요",
    "저도 그렇게 생각해요",
    "잘 모르겠어요",
    "확인해 보겠습니다",
    "휴대폰 충전기 좀 빌려줄래",
    "창문 좀 열어 줄래",
    "엘리베이터가 고장 났대",
    "택배 기사님이 문 앞에 두고 가셨어",
    "쓰레기 버리고 올게",
    "빨래 좀 개 줄래",
    "설거지는 내가 할게",
    "냄새가 너무 좋다",
    "눈이 펑펑 내려요",
    "배탈이 났나 봐",
    "콧물이 자꾸 나",
    "목소리가 쉬었어",
    "발목을 삐었어요",
    "손톱 깎아야겠다",
    "꿈에서 깼어",
    "햇빛이 눈부셔",
    "밖이 꽤 쌀쌀하네",
    "뒤꿈치가 까졌어",
    "짐 좀 들어 줄래",
    "횡단보도 건너서 왼쪽이에요",
    "오른쪽으로 꺾으세요",
    "똑바로 쭉 가세요",
    "신호등 앞에서 세워 주세요",
    "트렁크 좀 열어 주세요",
    "좌석 벨트를 매 주세요",
    "창가 자리로 주세요",
    "휴게소에 잠깐 들르자",
    "핸드폰 배터리가 다 됐어",
    "와이파이 비밀번호가 뭐예요",
)

TOPICS = _phrases(
    "환율, 주가, 유가, 금리, 물가, 부동산, 취업률, 출산율, 선거, 올림픽, 월드컵, 야구, 축구, 농구, 배구, 골프, "
    "날씨, 교통, 뉴스, 영화 순위, 음원 차트, 베스트셀러, 맛집, 여행지, 축제, 전시회, 공연 일정, 입시 제도, "
    "전기차, 인공지능, 우주 탐사"
)

# ---------------------------------------------------------------------------------------------------------------
# Slot samplers (written form; numbers as digits, normalized later)
# ---------------------------------------------------------------------------------------------------------------


def _choice(rng: random.Random, items: Sequence[str]) -> str:
    return items[rng.randrange(len(items))]


def _person_common(rng: random.Random) -> str:
    return _choice(rng, SURNAMES) + _choice(rng, GIVEN_NAMES)


def _place_common(rng: random.Random) -> str:
    pool = rng.randrange(4)
    if pool == 0:
        return _choice(rng, CITIES)
    if pool == 1:
        return _choice(rng, STATIONS)
    if pool == 2:
        return _choice(rng, NEIGHBOURHOODS)
    return _choice(rng, CITIES) + " " + _choice(rng, LANDMARKS)


def _hour(rng: random.Random) -> int:
    return rng.randint(1, 12)


def _time(rng: random.Random) -> str:
    form = rng.randrange(6)
    hour = _hour(rng)
    minute = rng.choice((5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, rng.randint(1, 59)))
    if form == 0:
        return f"{hour}시"
    if form == 1:
        return f"{hour}시 {minute}분"
    if form == 2:
        return f"{hour}시 반"
    if form == 3:
        return f"{_choice(rng, ('오전', '오후', '아침', '저녁', '밤', '새벽'))} {hour}시"
    if form == 4:
        return f"{_choice(rng, ('오전', '오후'))} {hour}시 {minute}분"
    return f"{rng.randint(0, 23)}:{minute:02d}"


def _date(rng: random.Random) -> str:
    month = rng.randint(1, 12)
    day = rng.randint(1, 28 if month == 2 else 30)
    form = rng.randrange(4)
    if form == 0:
        return f"{month}월 {day}일"
    if form == 1:
        return f"{rng.randint(1990, 2035)}년 {month}월 {day}일"
    if form == 2:
        return f"{month}월 {day}일 {_choice(rng, WEEKDAYS)}"
    return f"{rng.randint(2000, 2030)}년 {month}월"


def _money(rng: random.Random) -> str:
    form = rng.randrange(5)
    if form == 0:
        return f"{rng.randint(1, 99) * 100:,}원"
    if form == 1:
        return f"{rng.randint(1, 999) * 1000:,}원"
    if form == 2:
        return f"{rng.randint(1, 99)}만 원"
    if form == 3:
        return f"{rng.randint(1, 99)}만 {rng.randint(1, 9)}천 원"
    return f"{rng.randint(1000, 2000000):,}원"


def _count_item(rng: random.Random) -> str:
    item, counter, upper = COUNTABLES[rng.randrange(len(COUNTABLES))]
    return f"{item} {rng.randint(1, upper)}{counter}"


def _people(rng: random.Random) -> str:
    who, upper = PEOPLE_COUNTS[rng.randrange(len(PEOPLE_COUNTS))]
    return f"{who} {rng.randint(1, upper)}명"


def _phone(rng: random.Random) -> str:
    if rng.randrange(3):
        return f"010-{rng.randint(0, 9999):04d}-{rng.randint(0, 9999):04d}"
    area = rng.choice(("02", "031", "032", "051", "053", "062", "042", "064"))
    return f"{area}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"


def _address(rng: random.Random) -> str:
    form = rng.randrange(3)
    if form == 0:
        return f"{_choice(rng, CITIES)} {_choice(rng, DISTRICTS)} {_choice(rng, ROADS)} {rng.randint(1, 300)}"
    if form == 1:
        return f"{_choice(rng, DISTRICTS)} {_choice(rng, NEIGHBOURHOODS)} {rng.randint(1, 999)}번지"
    return f"{_choice(rng, APARTMENTS)} {rng.randint(101, 130)}동 {rng.randint(1, 25)}0{rng.randint(1, 6)}호"


def _number(rng: random.Random) -> str:
    form = rng.randrange(4)
    if form == 0:
        return str(rng.randint(0, 100))
    if form == 1:
        return str(rng.randint(100, 100000))
    if form == 2:
        return f"{rng.randint(1, 5000):,}"
    return f"{rng.randint(0, 99)}.{rng.randint(1, 9)}"


def _age(rng: random.Random) -> str:
    return f"{rng.randint(1, 99)}살"


def _percent(rng: random.Random) -> str:
    return f"{rng.randint(0, 100)}%"


def _temperature(rng: random.Random) -> str:
    value = rng.randint(-15, 38)
    return f"영하 {-value}도" if value < 0 else f"{value}도"


def _duration(rng: random.Random) -> str:
    form = rng.randrange(4)
    if form == 0:
        return f"{rng.randint(1, 12)}시간"
    if form == 1:
        return f"{rng.randint(1, 59)}분"
    if form == 2:
        return f"{rng.randint(1, 5)}시간 {rng.randint(1, 59)}분"
    return f"{rng.randint(1, 30)}일"


def _distance(rng: random.Random) -> str:
    if rng.randrange(2):
        return f"{rng.randint(1, 500)}km"
    return f"{rng.randint(1, 30)}.{rng.randint(1, 9)}km"


def _ordinal(rng: random.Random) -> str:
    return f"{rng.randint(1, 30)}번째"


def _floor(rng: random.Random) -> str:
    return f"{rng.randint(1, 63)}층"


def _bus(rng: random.Random) -> str:
    return f"{rng.randint(1, 9999)}번"


def _year_count(rng: random.Random) -> str:
    return f"{rng.randint(1, 40)}년"


def _score(rng: random.Random) -> str:
    return f"{rng.randint(0, 100)}점"


def _channel(rng: random.Random) -> str:
    return f"{rng.randint(1, 999)}번"


def _exit(rng: random.Random) -> str:
    return f"{rng.randint(1, 12)}번 출구"


def _volume(rng: random.Random) -> str:
    return str(rng.randint(0, 30))


def _pick_from(items: Sequence[str]) -> Callable[[random.Random], str]:
    """A slot sampler that picks uniformly from ``items``."""
    return lambda rng: _choice(rng, items)


_SLOT_SAMPLERS: Dict[str, Callable[[random.Random], str]] = {
    "given": _pick_from(GIVEN_NAMES),
    "city": _pick_from(CITIES),
    "landmark": _pick_from(LANDMARKS),
    "station": _pick_from(STATIONS),
    "weekday": _pick_from(WEEKDAYS),
    "rel_day": _pick_from(RELATIVE_DAYS),
    "event": _pick_from(EVENTS),
    "activity": _pick_from(ACTIVITIES),
    "shop_item": _pick_from(SHOP_ITEMS),
    "device": _pick_from(DEVICES),
    "action": _pick_from(DEVICE_ACTIONS),
    "media": _pick_from(MEDIA),
    "weather": _pick_from(WEATHER_WORDS),
    "weather_state": _pick_from(WEATHER_STATES),
    "food": _pick_from(FOODS),
    "family": _pick_from(FAMILY),
    "feeling": _pick_from(FEELINGS),
    "phrase": _pick_from(PHRASES),
    "topic": _pick_from(TOPICS),
    "time": _time,
    "date": _date,
    "money": _money,
    "count_item": _count_item,
    "people": _people,
    "phone": _phone,
    "address": _address,
    "number": _number,
    "age": _age,
    "percent": _percent,
    "temperature": _temperature,
    "duration": _duration,
    "distance": _distance,
    "ordinal": _ordinal,
    "floor": _floor,
    "bus": _bus,
    "years": _year_count,
    "volume": _volume,
    "score": _score,
    "channel": _channel,
    "exit": _exit,
}

# (domain, template). Slots "person" and "place" may be filled with favourite words.
TEMPLATES: Tuple[Tuple[str, str], ...] = (
    # numbers and counting
    ("numbers", "{count_item} 주세요"),
    ("numbers", "{count_item}만 사 올게"),
    ("numbers", "장바구니에 {count_item} 담아 줘"),
    ("numbers", "냉장고에 {count_item|이/가} 남았어"),
    ("numbers", "어제 {place}에서 {count_item} 샀어요"),
    ("numbers", "{person} 씨가 {count_item|을/를} 주문했어요"),
    ("numbers", "정답은 {number}입니다"),
    ("numbers", "{number} 더하기 {number|은/는} 얼마야"),
    ("numbers", "{number}에서 {number|을/를} 빼 줘"),
    ("numbers", "오늘 {people|이/가} 왔어요"),
    ("numbers", "{place}에 {people|이/가} 모였어"),
    ("numbers", "예약 인원은 {people}입니다"),
    ("numbers", "올해 {age}이에요"),
    ("numbers", "우리 {family|은/는} 올해 {age|이에요/예요}"),
    ("numbers", "{person} 씨는 {age|이에요/예요}"),
    ("numbers", "시험에서 {score} 받았어"),
    ("numbers", "{ordinal} 줄에 앉으세요"),
    ("numbers", "오늘 {distance} 걸었어"),
    ("numbers", "{place}까지 {distance} 남았습니다"),
    ("numbers", "배터리가 {percent} 남았어"),
    ("numbers", "할인율이 {percent|이야/야}"),
    ("numbers", "{floor|으로/로} 가 주세요"),
    ("numbers", "엘리베이터 타고 {floor|으로/로} 올라와"),
    ("numbers", "회사를 다닌 지 {years|이/가} 됐어요"),
    # dates
    ("dates", "제 생일은 {date|이에요/예요}"),
    ("dates", "{person} 씨 생일이 {date|이야/야}"),
    ("dates", "{date}에 {event|이/가} 있어"),
    ("dates", "{date|은/는} 무슨 요일이야"),
    ("dates", "개강은 {date}부터야"),
    ("dates", "{date}까지 {event} 준비를 끝내야 해"),
    ("dates", "{date}에 {place|으로/로} 여행 가요"),
    ("dates", "택배는 {date}에 도착할 예정입니다"),
    ("dates", "계약 기간은 {date}까지입니다"),
    # times
    ("times", "지금 {time|이야/야}"),
    ("times", "{time}에 깨워 줘"),
    ("times", "내일 {time}에 알람 맞춰 줘"),
    ("times", "기차가 {time}에 출발해요"),
    ("times", "{place} 가는 버스는 {time}에 와요"),
    ("times", "{time}까지 {place|으로/로} 와 주세요"),
    ("times", "영화는 {time}에 시작해"),
    ("times", "{duration} 뒤에 알려 줘"),
    ("times", "타이머 {duration} 맞춰 줘"),
    ("times", "회의가 {duration} 동안 이어졌어요"),
    ("times", "{place}까지 {duration} 걸려요"),
    ("times", "{person} 씨한테 {time}에 전화하라고 알려 줘"),
    # money
    ("money", "{shop_item} 가격이 {money|이에요/예요}"),
    ("money", "이 {shop_item|은/는} {money}입니다"),
    ("money", "{person} 씨에게 {money} 보내 줘"),
    ("money", "{family}한테 {money} 송금해 줘"),
    ("money", "이번 달 전기 요금이 {money} 나왔어"),
    ("money", "계좌에 {money} 입금했어요"),
    ("money", "카드로 {money} 결제할게요"),
    ("money", "{food} 한 그릇에 {money|이래/래}"),
    ("money", "택시비가 {money} 나왔어요"),
    ("money", "{place}에서 {money|을/를} 썼어"),
    ("money", "월세가 {money|이야/야}"),
    # addresses and places
    ("places", "주소는 {address|이에요/예요}"),
    ("places", "{address|으로/로} 배달해 주세요"),
    ("places", "{place|으로/로} 가 주세요"),
    ("places", "{place|으로/로} 길 안내 시작해 줘"),
    ("places", "가장 가까운 {landmark} 어디야"),
    ("places", "{place} 근처 {landmark} 찾아 줘"),
    ("places", "{place}에서 {place}까지 얼마나 걸려"),
    ("places", "{station}에서 만나자"),
    ("places", "{station} {exit} 앞이야"),
    ("places", "{bus} 버스 타면 {place|으로/로} 가요"),
    ("places", "{place}에 주차할 곳 있어"),
    ("places", "우리 집은 {place} 근처예요"),
    ("places", "{person} 씨는 {place}에 살아요"),
    ("places", "{place|은/는} {city}에 있어요"),
    ("places", "다음 정류장은 {place}입니다"),
    ("places", "이번 휴가는 {place|으로/로} 가자"),
    # schedules
    ("schedules", "{rel_day} {time}에 {event|이/가} 있어"),
    ("schedules", "{rel_day} {person} 씨랑 {activity} 약속 있어"),
    ("schedules", "{rel_day} {place}에서 {event|이/가} 잡혀 있어요"),
    ("schedules", "일정에 {event} 추가해 줘"),
    ("schedules", "{weekday} {time|으로/로} {event} 잡아 줘"),
    ("schedules", "{rel_day} 일정 알려 줘"),
    ("schedules", "{event} 일정을 {weekday|으로/로} 옮겨 줘"),
    ("schedules", "{rel_day} {event|은/는} 취소됐어요"),
    ("schedules", "{person} 씨와 {time}에 {place}에서 보기로 했어"),
    ("schedules", "{family|이랑/랑} {rel_day} {activity|을/를} 하기로 했어"),
    ("schedules", "{date} {time}에 {event} 예약해 줘"),
    ("schedules", "{rel_day|은/는} {activity|이나/나} 할까"),
    # weather
    ("weather", "{rel_day} {place} 날씨 어때"),
    ("weather", "{rel_day} {city}에 {weather|이/가} 온대"),
    ("weather", "{city|은/는} 지금 {temperature|이래/래}"),
    ("weather", "{rel_day} 최고 기온은 {temperature}입니다"),
    ("weather", "{rel_day} 강수 확률이 {percent|이래/래}"),
    ("weather", "{place|은/는} {rel_day} {weather_state}"),
    ("weather", "{weather} 때문에 {event|이/가} 취소됐어"),
    ("weather", "{rel_day} {weather} 소식 있어"),
    ("weather", "{rel_day} 우산 챙겨야 해"),
    ("weather", "습도가 {percent|이에요/예요}"),
    ("weather", "{city} 미세먼지 농도 알려 줘"),
    # device commands
    ("devices", "{device} {action}"),
    ("devices", "{device} {action}"),
    ("devices", "{device} {time}에 {action}"),
    ("devices", "{duration} 뒤에 {device} {action}"),
    ("devices", "에어컨 온도 {temperature|으로/로} 맞춰 줘"),
    ("devices", "난방 온도를 {temperature|으로/로} 올려 줘"),
    ("devices", "볼륨 {volume|으로/로} 해 줘"),
    ("devices", "밝기를 {percent|으로/로} 낮춰 줘"),
    ("devices", "{media} 틀어 줘"),
    ("devices", "{media} 좀 꺼 줘"),
    ("devices", "{person} 씨가 좋아하는 {media} 틀어 줘"),
    ("devices", "{device} 상태 확인해 줘"),
    ("devices", "{device|이/가} 고장 났어요"),
    ("devices", "채널 {channel|으로/로} 바꿔 줘"),
    # names and phone numbers
    ("names", "{person} 씨에게 전화해 줘"),
    ("names", "{person} 씨한테 문자 보내 줘"),
    ("names", "{person} 씨 번호 찾아 줘"),
    ("names", "제 이름은 {person}입니다"),
    ("names", "{person} 씨를 소개합니다"),
    ("names", "{given|아/야} 밥 먹자"),
    ("names", "{given|아/야} 어디 있니"),
    ("names", "{person} 선생님 계세요"),
    ("names", "{person} 씨 오늘 출근했어요"),
    ("names", "{person} 씨는 {place}에서 일해요"),
    ("names", "{person} 씨의 번호는 {phone}입니다"),
    ("names", "제 전화번호는 {phone|이에요/예요}"),
    ("names", "{phone|으로/로} 전화 걸어 줘"),
    ("names", "{family} 번호를 {phone|으로/로} 저장해 줘"),
    # conversation
    ("conversation", "{phrase}"),
    ("conversation", "{person} 씨 {phrase}"),
    ("conversation", "{given} 씨 {phrase}"),
    ("conversation", "{family} {phrase}"),
    ("conversation", "오늘은 {feeling}"),
    ("conversation", "{rel_day|은/는} 정말 {feeling}"),
    ("conversation", "점심에 {food} 먹을까"),
    ("conversation", "{food|이/가} 먹고 싶어"),
    ("conversation", "{place}에 맛있는 {food} 집이 있어"),
    ("conversation", "{family|이/가} {food|을/를} 해 주셨어"),
    ("conversation", "요즘 {topic|이/가} 어떻게 돼"),
    ("conversation", "{topic} 관련 소식 알려 줘"),
    ("conversation", "{person} 씨랑 {place}에서 {activity} 했어"),
)


# ---------------------------------------------------------------------------------------------------------------
# Particles and counting
# ---------------------------------------------------------------------------------------------------------------

_PARTICLES = {
    "이/가",
    "을/를",
    "은/는",
    "와/과",
    "으로/로",
    "이랑/랑",
    "아/야",
    "이에요/예요",
    "이야/야",
    "이래/래",
    "이나/나",
}


def _final_consonant(syllable: str) -> int:
    """Index of the final consonant (jongseong) of a Hangul syllable, 0 when it has none."""
    return (ord(syllable) - 0xAC00) % 28


def with_particle(word: str, particle: str) -> str:
    """Attach the particle form that fits the last syllable of ``word``.

    Args:
        word: a word whose reading ends in a Hangul syllable (digits are read first via ``normalize_text``).
        particle: a pair such as ``"이/가"``: the first form follows a final consonant, the second a vowel.
            ``"으로/로"`` also takes ``로`` after a final ``ㄹ``.

    Returns:
        ``word`` followed directly by the chosen form.

    Raises:
        ValueError: the particle pair is unknown or the reading of ``word`` does not end in a Hangul syllable.
    """
    if particle not in _PARTICLES:
        raise ValueError(f"unknown particle {particle!r}; allowed: {sorted(_PARTICLES)}")
    reading = normalize_text(word)
    if not reading or not _HANGUL_RE.fullmatch(reading[-1]):
        raise ValueError(f"cannot attach {particle!r} to {word!r}: its reading does not end in a Hangul syllable")
    after_consonant, after_vowel = particle.split("/")
    final = _final_consonant(reading[-1])
    if particle == "으로/로" and final == 8:  # ㄹ takes 로
        return word + after_vowel
    return word + (after_consonant if final else after_vowel)


def count_syllables(text: str) -> int:
    """Number of Hangul syllables in ``text``."""
    return len(_HANGUL_RE.findall(text))


# ---------------------------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentence:
    """One generated sentence.

    Attributes:
        written: the sentence as written, with digits and symbols (``"3시에 깨워 줘"``).
        text: the normalized transcript: Hangul syllables separated by single spaces (``"세 시에 깨워 줘"``).
        domain: the template's domain (``"times"``).
        favourite: the favourite word the sentence was built around, or ``None``.
    """

    written: str
    text: str
    domain: str
    favourite: Optional[str] = None


class SentenceGenerator:
    """Samples Korean sentences from :data:`TEMPLATES`.

    Args:
        rare_prob: probability that a ``{person}``/``{place}`` slot in an ordinary sentence is filled from
            the rare pools (:data:`RARE_PERSONS`, :data:`RARE_PLACES`) instead of the common ones.
        min_syllables: shortest transcript, in Hangul syllables.
        max_syllables: longest transcript, in Hangul syllables.

    Raises:
        ValueError: bad probability or length bounds.
    """

    def __init__(
        self,
        rare_prob: float = 0.02,
        min_syllables: int = MIN_SYLLABLES,
        max_syllables: int = MAX_SYLLABLES,
    ) -> None:
        if not 0.0 <= rare_prob <= 1.0:
            raise ValueError(f"rare_prob must be in [0, 1], got {rare_prob}")
        if not 1 <= min_syllables <= max_syllables:
            raise ValueError(f"need 1 <= min_syllables <= max_syllables, got {min_syllables}, {max_syllables}")
        self.rare_prob = rare_prob
        self.min_syllables = min_syllables
        self.max_syllables = max_syllables
        self._favourite_templates = {
            kind: tuple(t for t in TEMPLATES if "{" + kind + "}" in t[1] or "{" + kind + "|" in t[1])
            for kind in FAVOURITE_KINDS
        }

    def sample(
        self,
        rng: random.Random,
        favourites: Optional[Mapping[str, Sequence[str]]] = None,
        favourite_prob: float = 0.0,
        max_tries: int = 1000,
    ) -> Sentence:
        """Draw one sentence whose transcript is within the syllable bounds.

        Args:
            rng: the source of randomness (the same state gives the same sentence).
            favourites: optional favourite words per kind (``{"person": [...], "place": [...]}``).
            favourite_prob: probability that the sentence is built around one favourite word.
            max_tries: resampling limit for the length bounds.

        Returns:
            The sentence.

        Raises:
            ValueError: an unknown favourite kind, or no sentence within bounds after ``max_tries`` draws.
        """
        favourites = {kind: list(words) for kind, words in (favourites or {}).items() if words}
        unknown = sorted(set(favourites) - set(FAVOURITE_KINDS))
        if unknown:
            raise ValueError(f"unknown favourite kinds {unknown}; allowed: {list(FAVOURITE_KINDS)}")
        for _ in range(max_tries):
            favourite_kind = None
            if favourites and rng.random() < favourite_prob:
                kinds = sorted(favourites)
                favourite_kind = kinds[rng.randrange(len(kinds))]
                domain, template = self._favourite_templates[favourite_kind][
                    rng.randrange(len(self._favourite_templates[favourite_kind]))
                ]
            else:
                domain, template = TEMPLATES[rng.randrange(len(TEMPLATES))]
            written, favourite = self._fill(rng, template, favourite_kind, favourites)
            text = normalize_text(written)
            if self.min_syllables <= count_syllables(text) <= self.max_syllables:
                if not _TRANSCRIPT_RE.fullmatch(text):
                    raise ValueError(f"template {template!r} produced a transcript with non-Hangul text: {text!r}")
                return Sentence(written=written, text=text, domain=domain, favourite=favourite)
        raise ValueError(
            f"no sentence with {self.min_syllables}..{self.max_syllables} syllables after {max_tries} draws"
        )

    def sample_unique(
        self,
        rng: random.Random,
        count: int,
        exclude: Iterable[str] = (),
        favourites: Optional[Mapping[str, Sequence[str]]] = None,
        favourite_prob: float = 0.0,
    ) -> List[Sentence]:
        """Draw ``count`` sentences whose transcripts are distinct from each other and from ``exclude``.

        Args:
            rng: the source of randomness.
            count: number of sentences.
            exclude: transcripts that must not be produced again (e.g. those of other splits).
            favourites: see :meth:`sample`.
            favourite_prob: see :meth:`sample`.

        Returns:
            The sentences, in draw order.

        Raises:
            ValueError: ``count`` is negative, or the generator keeps repeating itself (fewer distinct
                sentences reachable than requested).
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        seen = set(exclude)
        sentences: List[Sentence] = []
        misses = 0
        while len(sentences) < count:
            sentence = self.sample(rng, favourites=favourites, favourite_prob=favourite_prob)
            if sentence.text in seen:
                misses += 1
                if misses > 100 * count + 1000:
                    raise ValueError(f"could only draw {len(sentences)} distinct sentences of the {count} requested")
                continue
            seen.add(sentence.text)
            sentences.append(sentence)
        return sentences

    def _fill(
        self,
        rng: random.Random,
        template: str,
        favourite_kind: Optional[str],
        favourites: Mapping[str, Sequence[str]],
    ) -> Tuple[str, Optional[str]]:
        slots = list(_SLOT_RE.finditer(template))
        forced_index = None
        if favourite_kind is not None:
            candidates = [i for i, match in enumerate(slots) if match.group(1) == favourite_kind]
            forced_index = candidates[rng.randrange(len(candidates))]
        pieces = []
        favourite = None
        position = 0
        for index, match in enumerate(slots):
            pieces.append(template[position : match.start()])
            name, particle = match.group(1), match.group(2)
            if index == forced_index:
                words = favourites[name]
                value = words[rng.randrange(len(words))]
                favourite = value
            else:
                value = self._slot_value(rng, name)
            pieces.append(with_particle(value, particle) if particle else value)
            position = match.end()
        pieces.append(template[position:])
        return "".join(pieces), favourite

    def _slot_value(self, rng: random.Random, name: str) -> str:
        if name == "person":
            if rng.random() < self.rare_prob:
                return _choice(rng, RARE_PERSONS)
            return _person_common(rng)
        if name == "place":
            if rng.random() < self.rare_prob:
                return _choice(rng, RARE_PLACES)
            return _place_common(rng)
        return _SLOT_SAMPLERS[name](rng)
